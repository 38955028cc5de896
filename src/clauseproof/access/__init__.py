"""SX-EDAS-1: role-based access control judged as a matrix of (subject, operation) → allowed / refused."""
