"""TuNAS over UIB (paper Sec. 6.1, Appendix A): cost models, supernet, controller, search CLI."""
