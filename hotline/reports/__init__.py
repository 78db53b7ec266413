"""Figures for supervisors: live counts, daily series over a period of local days, and agency quality.

Every function reads through an open session and returns plain data with codes, never labels, so the
dashboard, its JSON endpoints and the exports word them in the reader's language.
"""
