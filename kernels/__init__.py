"""Triton kernels of swirl, installed as ``swirl.kernels``.

Each kernel file sits beside a plain-torch reference with the same signature. Triton is an
optional dependency (the ``cuda`` extra); nothing here is imported unless a Triton path is asked for.
"""
