"""Clouds the harness starts itself: the embedded OpenStack (``--cp-cloud=embedded-openstack``)."""
