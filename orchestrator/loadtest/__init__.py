"""`hedgerow loadtest`: serve an export with one Ray Serve replica on 127.0.0.1 and drive it with open-loop Poisson
arrivals (Locust, in a process of its own) at the rate the cost model promised that replica; loadtest.json says
whether the latency SLO held and what share of the in-process throughput the served replica kept.

Nothing here is imported by `orchestrator/loadtest/locustfile.py` but `arrivals` (the locust process imports no torch).
"""
