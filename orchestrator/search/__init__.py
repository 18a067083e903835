"""The joint search on Ray Tune + Optuna: space, searcher, trial, runner.

Ray is imported only inside this package, so compression, measurement and the
cost model stay testable without starting it. Import submodules directly
(`orchestrator.search.runner`); this package imports nothing eagerly.
"""
