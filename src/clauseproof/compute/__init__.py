"""Cloud compute: one small driver interface, a simulated EC2 (moto), Libcloud providers, a fake for self-tests."""
