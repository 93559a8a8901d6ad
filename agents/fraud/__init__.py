"""The fraud pipeline: every transaction -> APPROVE / REVIEW / DECLINE."""
