"""moego-monitor's dashboard: reads the archive, draws it, and asks ``collectors`` to act.

:mod:`dashboard.reads` is the one module that opens the archive: a cached function per question, each
running a pure query of :mod:`dashboard.queries`, :mod:`dashboard.stats` or :mod:`dashboard.coverage`
(archive -> DataFrame, tested without Streamlit). :mod:`dashboard.charts` turns frames into charts (Vega-Lite, plotly)
and :mod:`dashboard.filters` holds the filters' URL form. ``dashboard/app.py`` is the Streamlit entry point
(started warmed up by :mod:`dashboard.serve`: ``moego-monitor dashboard``, ``python -m dashboard``);
the pages live in ``dashboard/views/``. Pages never write: they call collector-side functions
(:func:`collectors.redelivery.redeliver_and_resync`, :mod:`collectors.bulk`, :mod:`collectors.trigger`,
:func:`collectors.collect.collect`) and then :func:`dashboard.reads.clear`.
"""
