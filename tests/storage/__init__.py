"""Tests of storage/: downloads (resume, retry, mirrors, TLS, proxies), vetted extraction, verification, locks, and shared or hostile filesystems."""
