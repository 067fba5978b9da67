"""Signal sources: where carbon intensity and prices come from, and how fresh they are.

Why this package exists: the planner needs trustworthy numbers and must know when it has none.
``contract`` defines the one ``Source`` protocol and its errors; ``static``, ``trace``,
``promql``, ``electricitymaps`` and ``watttime`` implement it (``fake`` for tests); ``chain`` is
the explicit fallback order; ``planning`` turns readings into planner inputs without ever
touching sovereignty; ``telemetry`` exposes freshness and fallbacks as metrics. What a
SignalSource may read and reach is bounded: trace files by ``tracefile.confine`` (the operator's
trace directories), HTTP sources by ``egress.EgressPolicy`` (https to public addresses unless
the operator allows more). See docs/signals.md.
"""
