"""moego-monitor's dashboard: reads the archive, draws it, and asks ``collectors`` to act.

Pure modules do the work and are tested without Streamlit: :mod:`dashboard.filters` (the shared
filters and their URL form), :mod:`dashboard.queries` (archive -> DataFrame), :mod:`dashboard.charts`
(DataFrame -> plotly Figure) and :mod:`dashboard.export` (streaming CSV). ``dashboard/app.py`` is the
Streamlit entry point; the pages live in ``dashboard/views/``.
"""
