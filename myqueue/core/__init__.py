"""Pure logic shared by every component: names, limits, placement, wire framing, the cluster view.

Nothing in this package performs I/O or imports an HTTP or database library (enforced by
import-linter, see pyproject.toml), so every piece here is testable as plain functions.
"""
