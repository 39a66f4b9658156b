"""Shared pieces of dpp-guard's end-to-end tests and demos.

Everything here runs real processes on 127.0.0.1: Envoy from the project
venv, recording HTTP(S) upstreams, raw TCP recorders, and a throwaway test PKI
generated with openssl at run time.
"""
