"""Service levels: node utilisation under a declared load (SX-SLA-3) and availability probes (SX-SLA-1/2)."""
