"""Golden PROXY protocol headers, crafted by hand from the spec.

:mod:`vectors.golden` holds valid headers with the result each must parse to,
and invalid ones with the error and field each must be rejected with.

"""
