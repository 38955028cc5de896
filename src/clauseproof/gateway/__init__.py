"""The API gateway's checks (SX-EDAS-2 streaming pass-through; the rest of issue #19 builds here)."""
