"""Tools built on minirt's public API: profiling, benchmarking, comparing, batching.

Each tool module may expose ``add_cli(subparsers)`` to add its ``minirt <command>``.
"""
