"""Elastic context parallelism: micro-batch slots whose groups borrow ranks across DP replicas."""
