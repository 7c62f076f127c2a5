"""PostgreSQL plumbing shared by the broker's and the managers' stores (no HTTP here)."""
