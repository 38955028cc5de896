"""The database service's clauses (SX-RDS-1, SX-RDS-5, BZ-DB-3, BZ-SEC-1): what a managed database says it is and
does — its engine, its slow-query analysis and health status, the machine it runs on, its transport security and
audit trail — each judged by a behaviour the harness causes or reads itself, never by the service's word."""
