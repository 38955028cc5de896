"""Encryption (BZ-DB-2, column SM4): the SM4 cipher, the harness's SM4 column type, the at-rest canary scan, a
target's own column encryption.
"""
