"""The tools a trajectory can call: search (``<search_query>``) and calculator (``<math_exp>``)."""

from swirl.tools.base import Tool

__all__ = ["Tool"]
