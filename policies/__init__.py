"""What should exist: the policy model, loading and validation, matching, desired and observed
state, and the diff between them."""
