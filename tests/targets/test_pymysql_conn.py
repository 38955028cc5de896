"""The harness's PyMySQL connection: PyMySQL's own TLS behaviour, with the "preferred" mode's context built once
per process instead of for every connection (18-22 ms of client CPU each, measured in ``./run bench --only
connect``).  No server is needed: ``defer_connect`` builds the connection object without connecting."""

from __future__ import annotations

import ssl

import pymysql

from clauseproof.targets.pymysql_conn import connect


def test_the_preferred_context_is_pymysqls_own_and_shared() -> None:
    stock = pymysql.connect(host="127.0.0.1", defer_connect=True)
    a, b = connect(host="127.0.0.1", defer_connect=True), connect(host="127.0.0.1", defer_connect=True)
    assert a.ctx is b.ctx  # built once
    assert (a.ssl, a._ssl_required) == (stock.ssl, stock._ssl_required) == (True, False)  # TLS if offered
    assert (a.ctx.verify_mode, a.ctx.check_hostname) == (stock.ctx.verify_mode, stock.ctx.check_hostname)
    assert a.ctx.verify_mode == ssl.CERT_NONE


def test_tls_options_given_are_passed_through_untouched() -> None:
    off = connect(host="127.0.0.1", defer_connect=True, ssl_disabled=True)
    assert off.ssl is False
    required = connect(host="127.0.0.1", defer_connect=True, ssl_verify_cert=True)
    shared = connect(host="127.0.0.1", defer_connect=True).ctx
    assert required._ssl_required and required.ctx is not shared and required.ctx.verify_mode == ssl.CERT_REQUIRED
    mine = ssl.create_default_context()
    assert connect(host="127.0.0.1", defer_connect=True, ssl=mine).ctx is mine
