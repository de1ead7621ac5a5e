"""Saved views in the sidebar: pick a named filter set, or save the current one under a name.

A view is its filters' URL query parameters (:func:`dashboard.filters.to_query_params`), stored in the
archive by :func:`collectors.archive.views.save_view`. Picking one (``saved_view``) writes its parameters
into the URL; the sidebar then reads them as it reads any link (:func:`dashboard.sidebar.render_filters`).
Widget keys: ``saved_view``, ``view_name``, ``save_view``, ``delete_view``.
"""

from __future__ import annotations

import streamlit as st

from collectors.archive.filters import Filters
from collectors.archive.views import ViewError, delete_view, save_view

from . import reads, ui
from .safe import md
from .filters import QUERY_KEYS, to_query_params
from .sidebar import reseed_from_url

__all__ = ["render_saved_views"]

_NONE = "—"
_RESULT = "_view_result"


def _apply(db_path: str) -> None:
    """The user picked a view: put its parameters in the URL (the filters follow on this run)."""
    name = st.session_state.get("saved_view")
    view = next((v for v in reads.saved_views(db_path) if v.name == name), None)
    if view is None:
        return
    for key in QUERY_KEYS:
        if key in view.params:
            values = view.params[key]
            st.query_params[key] = values if len(values) > 1 else values[0]
        elif key in st.query_params:
            del st.query_params[key]
    reseed_from_url()


def _save(db_path: str, filters: Filters) -> None:
    try:
        name = save_view(db_path, st.session_state.get("view_name", ""), to_query_params(filters), saved_by=ui.actor())
    except ViewError as exc:
        st.session_state[_RESULT] = ("error", f"Not saved: {exc}.")
        return
    reads.clear()
    st.session_state[_RESULT] = ("success", f"Saved the view “{name}”.")
    st.session_state["view_name"] = ""


def _delete(db_path: str) -> None:
    name = st.session_state.get("saved_view")
    if name and name != _NONE:
        delete_view(db_path, name)
        reads.clear()
        st.session_state[_RESULT] = ("success", f"Deleted the view “{name}”.")
    st.session_state["saved_view"] = _NONE


def render_saved_views(ctx: ui.Context) -> None:
    """Saved views, drawn where the caller is (the sidebar, above the filters): a picker and "save this view"."""
    views = reads.saved_views(ctx.db_path)
    names = [_NONE, *(v.name for v in views)]
    if st.session_state.get("saved_view") not in names:
        st.session_state["saved_view"] = _NONE
    st.selectbox("Saved views", names, key="saved_view", on_change=_apply, args=(ctx.db_path,),
                 help="Named filter sets kept in the archive: pick one to apply it.")
    with st.popover("Save this view", icon=":material/bookmark_add:"):
        st.text_input("Name", key="view_name", max_chars=40, placeholder="e.g. Failures of the ERP")
        st.button("Save", key="save_view", on_click=_save, args=(ctx.db_path, ctx.filters))
        st.button("Delete the picked view", key="delete_view", on_click=_delete, args=(ctx.db_path,),
                  disabled=st.session_state.get("saved_view", _NONE) == _NONE)
    result = st.session_state.pop(_RESULT, None)
    if result:
        getattr(st, result[0])(md(result[1]))
