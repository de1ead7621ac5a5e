"""Deliveries: the filtered entries a page at a time, one entry's detail, CSV export, bulk redelivery."""

from __future__ import annotations

import functools

import streamlit as st

from dashboard import reads, ui
from dashboard.bulk import render_bulk
from dashboard.deliveries_table import COLUMN_CONFIG, COLUMN_ORDER, list_frame
from dashboard.detail import render_detail
from dashboard.tail_panel import render_tail
from dashboard.present import export_command_line, plural
from dashboard.queries import Count, Cursor, Page

#: The browser download holds the whole file in the server's memory: bigger views go through the CLI.
DOWNLOAD_ROW_LIMIT = 200_000
PAGE_SIZES = (50, 100, 250, 500)
_PAGES = "_list_cursors"
_SEEN_SELECTION = "_list_selection"

ctx = ui.context()
window = ctx.window
st.title("Deliveries")
st.caption(ui.window_caption(ctx))


count: Count = reads.count_deliveries(ctx.db_path, ctx.filters, window)
top = st.columns([1, 1, 2], vertical_alignment="bottom")
top[0].metric("Deliveries in view", str(count),
              help="Exact from the hourly rollup; with a search, counted up to 10,000 (shown as 10,000+ beyond).")
if count.exact and count.value <= DOWNLOAD_ROW_LIMIT:
    top[1].download_button(
        "Download CSV", key="export_csv", icon=":material/download:", mime="text/csv", on_click="ignore",
        file_name=f"deliveries-{window.since:%Y%m%dT%H%M}-{window.until:%Y%m%dT%H%M}.csv",
        data=functools.partial(reads.csv_bytes, ctx.db_path, ctx.filters, ctx.now, ctx.settings.secret_headers),
        disabled=count.value == 0, help="Every entry of this view (secrets redacted), oldest first.",
    )
else:
    top[1].caption(f"Over {DOWNLOAD_ROW_LIMIT:,} rows: export from the command line.")
with top[2].popover("Export from the command line", icon=":material/terminal:"):
    st.code(export_command_line(ctx.filters, window), language="bash")
    if ctx.filters.event_types or ctx.filters.search or len(ctx.filters.status_classes) > 1 or ctx.filters.status_codes:
        st.caption("The command has no event-type, search, exact-status or multi-status filter: it exports a wider set.")
    st.caption("It also writes a manifest with the file's SHA-256 for an audit.")

render_bulk(ctx)
render_tail(ctx)

order = st.segmented_control("Order", ["newest", "oldest"], key="list_order", default="newest",
                             format_func={"newest": "Newest first", "oldest": "Oldest first"}.__getitem__) or "newest"
size = st.session_state.get("list_page_size", PAGE_SIZES[0])
signature = (ctx.filters, order, size)
pages = st.session_state.get(_PAGES)
if pages is None or pages["signature"] != signature:
    pages = {"signature": signature, "stack": []}
    st.session_state[_PAGES] = pages
cursor: Cursor | None = pages["stack"][-1] if pages["stack"] else None
page: Page = reads.delivery_page(ctx.db_path, ctx.filters, window, after=cursor, order=order, limit=size)


def _go(step: int, next_cursor: Cursor | None) -> None:
    """Move a page older (+1, pushing the next cursor) or newer (-1); forget the table's selection."""
    stack = st.session_state[_PAGES]["stack"]
    if step > 0 and next_cursor is not None:
        stack.append(next_cursor)
    elif step < 0 and stack:
        stack.pop()
    st.session_state.pop("deliveries_table", None)


rows = list_frame(page.rows, ctx.tz, ctx.label)
event = st.dataframe(
    rows,
    key="deliveries_table",
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    height=420,
    column_order=COLUMN_ORDER,
    column_config=COLUMN_CONFIG, placeholder=ui.MISSING,
)
nav = st.columns([1, 1, 1, 3], vertical_alignment="center")
position = len(pages["stack"])
nav[0].button("← Newer" if order == "newest" else "← Older", key="page_prev", disabled=position == 0,
              on_click=_go, args=(-1, None), width="stretch")
nav[1].button("Older →" if order == "newest" else "Newer →", key="page_next", disabled=page.next is None,
              on_click=_go, args=(1, page.next), width="stretch")
nav[2].selectbox("Rows per page", PAGE_SIZES, key="list_page_size", label_visibility="collapsed",
                 format_func=lambda n: f"{n} per page")
nav[3].caption(f"Page {position + 1} · {plural(len(rows), 'row')} shown of {count}. Click a row for its detail.")

selected = tuple(event.selection.rows) if event is not None else ()
if selected != st.session_state.get(_SEEN_SELECTION, ()):
    st.session_state[_SEEN_SELECTION] = selected
    if selected and selected[0] < len(page.rows):
        st.query_params["delivery"] = page.rows.iloc[selected[0]]["id"]



def _close_detail() -> None:
    """The dialog was dismissed: forget the delivery in the URL and the table's selection."""
    st.query_params.pop("delivery", None)
    st.session_state.pop("deliveries_table", None)
    st.session_state[_SEEN_SELECTION] = ()


@st.dialog("Delivery detail", width="large", on_dismiss=_close_detail)
def _detail_dialog(delivery_id: str) -> None:
    """The detail in a dialog: where the eye is after a click, on a wide screen and on a phone alike."""
    if st.button("Close detail", key="close_detail", icon=":material/close:"):
        _close_detail()
        st.rerun()
    render_detail(ctx, delivery_id)


delivery_id = st.query_params.get("delivery")
if delivery_id:
    _detail_dialog(delivery_id)
