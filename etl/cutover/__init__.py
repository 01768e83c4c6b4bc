"""Staged, reversible cutovers: wave plan, ledger, promotion and rollback, reconciliation."""
