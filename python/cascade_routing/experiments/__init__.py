"""The paper's experiment: data, estimators, strategies, evaluation, report.

Needs the ``[eval]`` extra (pandas, scikit-learn, matplotlib, tqdm); the library itself does
not import this package.

* :mod:`.datasets` — the :class:`~.datasets.Dataset` type and one loader per data source;
* :mod:`.tables` — :class:`~.tables.TwoPhaseTables`, what every estimator pipeline returns;
* :mod:`.simulation` — the paper's simulated estimators and RouterBench protocol;
* :mod:`.real_estimators` — estimators fitted on real data (confidences, group priors);
* :mod:`.metrics` — the AUC of the cost–quality curve, hull, budgets, bootstrap;
* :mod:`.evaluation` — fit each strategy at every budget, replay, collect the curves;
* :mod:`.published` — the paper's and the reference code's published AUC tables;
* :mod:`.settings` — names and settings (importable without the ``[eval]`` extra);
* :mod:`.pipeline` — data → estimators → strategies → evaluation → report, for the CLI.
"""
