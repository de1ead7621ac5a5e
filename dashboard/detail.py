"""The detail view of one delivery (``?delivery=<id>`` on the Deliveries page), with its redelivery button.

Shows the outcome, timings and retries; request and response headers (secret-like values
redacted once more on display) and bodies (pretty JSON); every attempt at the same event as a
timeline; the redeliveries already requested. The Redeliver button (disabled, with the reason, for an
entry older than MoeGo's 15-day retention, which MoeGo has deleted) asks for confirmation
(``redeliver`` then ``redeliver_confirm`` / ``redeliver_cancel``), calls
:func:`collectors.redelivery.redeliver_and_resync` (which audits, redelivers and syncs the webhook so the
new attempt shows) and shows a toast.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from collectors.archive.coverage import RETENTION
from collectors.redelivery import EXPIRED_UPSTREAM, GUARD_SECONDS, Candidate, expired_upstream, redeliver_and_resync

from . import charts, reads, ui
from .present import MAX_BODY_CHARS, header_rows, pretty_body, status_text
from .safe import code, link_param, md
from .highlight import marked, matching_lines, search_words
from .timeline import attempt_kinds, next_retry

__all__ = ["render_detail"]

_CONFIRM = "_confirm_redeliver"
_RECENT = "_redelivered_at"  # delivery id -> time.monotonic() of the last redelivery from this session
_LAST_RESULT = "_redeliver_result"
_VERDICT_ICONS = {"succeeded": ":material/check_circle:", "skipped": ":material/block:", "failed": ":material/error:"}


def _body(text: str, is_base64: int, *, event: bool = False, search: str = "") -> None:
    """A body pretty-printed (an event's base64 payloads decoded, ``event=True``), its raw text one click away.

    The raw text is shown with ``st.code``, exactly as archived (never Markdown); only the note, built from
    fixed words, field names and numbers, goes through ``st.caption``.
    """
    body = pretty_body(text, bool(is_base64), decode_payloads=event)
    if body.note:
        st.caption(body.note)
    words = search_words(search)
    hits = matching_lines(body.text, words)
    if hits:  # where the view's search words are, marked (the body below stays plain text)
        st.markdown("  \n".join(f"line {number}: {marked(excerpt, words)}" for number, excerpt in hits))
    if body.text:
        st.code(body.text, language=body.language, wrap_lines=True)
    if body.text != text:
        with st.expander("Raw body, exactly as logged" + (" (base64)" if is_base64 else "")):
            if len(text) > MAX_BODY_CHARS:
                st.caption(f"The first {MAX_BODY_CHARS:,} of {len(text):,} characters; the CSV export holds it whole.")
            st.code(text[:MAX_BODY_CHARS], language=None, wrap_lines=True)


def _headers(headers: dict[str, list[str]], ctx: ui.Context) -> None:
    rows = header_rows(headers, ctx.settings.secret_headers)
    if rows.empty:
        st.caption("No headers.")
    else:
        st.dataframe(rows.rename(columns={"header": "Header", "value": "Value"}), hide_index=True, width="stretch",
                     column_config={"Value": st.column_config.TextColumn("Value", width="large")},
                     placeholder=ui.MISSING)


def _redeliver(ctx: ui.Context, record: dict[str, Any]) -> bool:
    """Call MoeGo, audit, toast, and sync the webhook from just before the new attempt (``False``, with the
    reason shown, when this session may not redeliver)."""
    if not ui.may_act(ctx, "redeliver"):
        return False
    candidate = Candidate(record["id"], record["webhook_id"], record["event_id"], record["delivered_at"])
    st.session_state.setdefault(_RECENT, {})[record["id"]] = time.monotonic()
    with st.spinner("Asking MoeGo to redeliver, then syncing the webhook so the new attempt shows…"):
        done = redeliver_and_resync(ctx.settings, candidate, requested_by=ui.actor())
    reads.clear()
    result = done.result
    # Shown (and toasted, once) by the run that follows, so it survives the st.rerun().
    st.session_state[_LAST_RESULT] = {"id": record["id"], "verdict": result.verdict, "message": result.message,
                                      "new_id": result.new_delivery.id if result.new_delivery else None,
                                      "sync": done.sync_lines, "toasted": False}
    return True


def _redelivery_controls(ctx: ui.Context, record: dict[str, Any]) -> None:
    delivery_id = record["id"]
    last = st.session_state.get(_LAST_RESULT)
    if last and last["id"] == delivery_id:
        # Green only when the new attempt succeeded: a redelivery MoeGo sent to an endpoint that failed again is a failure.
        verdict = last["verdict"]
        if not last["toasted"]:
            st.toast(md(last["message"]), icon=_VERDICT_ICONS[verdict])
            last["toasted"] = True
        show = {"succeeded": st.success, "skipped": st.warning}.get(verdict, st.error)
        show(md(last["message"]), icon=_VERDICT_ICONS[verdict])
        if last["new_id"]:
            # A link-styled button: it opens the new attempt here (a page link to this same page would not move).
            if st.button(f"Open the new attempt {md(last['new_id'])}", key="open_new_attempt", type="tertiary",
                         icon=":material/open_in_new:"):
                st.query_params["delivery"] = last["new_id"]
                st.rerun()
        for line in last["sync"]:
            st.caption(md(line))
    if expired_upstream(record["delivered_at"], ctx.now):
        st.button("Redeliver", key="redeliver", disabled=True,
                  help=f"MoeGo deletes its log entries after {RETENTION.days} days and has deleted this one, so it "
                       "cannot be redelivered. The archive keeps its copy.")
        st.caption(f"Not redeliverable: {EXPIRED_UPSTREAM}. MoeGo has deleted this entry; only the archive has it.")
        return
    blocked = ui.blocker(ctx, "redeliver")
    if blocked:
        st.button("Redeliver", key="redeliver", disabled=True, help=blocked)
        return
    sent_at = st.session_state.get(_RECENT, {}).get(delivery_id)
    recently = sent_at is not None and time.monotonic() - sent_at < GUARD_SECONDS
    if st.session_state.get(_CONFIRM) != delivery_id:
        if st.button("Redeliver", key="redeliver", icon=":material/replay:", disabled=recently,
                     help="Asks MoeGo to send this event to the endpoint again (you confirm first)."
                     + (" Just redelivered: wait a minute before sending it again." if recently else "")):
            st.session_state[_CONFIRM] = delivery_id
            st.rerun()
        return
    st.warning(f"Ask MoeGo to send event {code(record['event_id'])} ({md(record['event_type'])}) to "
               f"{code(record['request_url'])} again? The endpoint receives it once more.")
    yes, no = st.columns([1, 4])
    if yes.button("Yes, redeliver", key="redeliver_confirm", type="primary", disabled=recently):
        st.session_state.pop(_CONFIRM, None)
        if _redeliver(ctx, record):
            st.rerun()
    if no.button("Cancel", key="redeliver_cancel"):
        st.session_state.pop(_CONFIRM, None)
        st.rerun()


def _facts(record: dict[str, Any], ctx: ui.Context) -> None:
    facts = {
        "Delivered at": ui.fmt_time(record["delivered_at"], ctx.tz),
        "Webhook": ctx.labeled(record["webhook_id"]),
        "Event": f"{record['event_type']} · {record['event_id']}",
        "Error class": record["error_class"] or "—",
        "Error": record["error"] or "—",
        "Request URL": record["request_url"] or "—",
        "Delivered to": record["delivered_to"] or "—",
        "Formats": f"request {record['request_format'] or '—'}, response {record['response_format'] or '—'}",
        "Archived": f"first seen {ui.fmt_time(record['first_seen_at'], ctx.tz)}, "
                    f"last seen {ui.fmt_time(record['last_seen_at'], ctx.tz)}",
    }
    st.dataframe(pd.DataFrame({"Field": list(facts), "Value": list(facts.values())}), hide_index=True,
                 width="stretch", key="detail_facts",
                 column_config={"Value": st.column_config.TextColumn("Value", width="large")},
                 placeholder=ui.MISSING)


def attempts_table(tries: pd.DataFrame, ctx: ui.Context, kinds: pd.Series | None = None) -> pd.DataFrame:
    """An event's attempts as people read them: what each is, labelled webhook, outcome words, ``—`` for no response."""
    return pd.DataFrame({
        "Delivered at": ui.local(tries["delivered_at"], ctx.tz),
        "Entry": kinds if kinds is not None else "",
        "Outcome": tries["success"].map({True: "succeeded", False: "failed"}),
        "Status": tries["response_status"].map(lambda s: str(int(s)) if s else "—"),
        "Webhook": tries["webhook_id"].map(ctx.label),
        "Duration (ms)": tries["duration_ms"],
        "Automatic retries": tries["retry_count"],
        "Error": tries["error"].fillna("").map(lambda e: e or "—"),
        "Delivery id": tries["id"],
        "Open": "deliveries?delivery=" + tries["id"].map(link_param),
    })


def audit_table(rows: pd.DataFrame, ctx: ui.Context) -> pd.DataFrame:
    """A delivery's redelivery audit rows as people read them (no raw column names, no ``None``)."""

    def new_outcome(row: pd.Series) -> str:
        if row["outcome"] != "sent":
            return "—"
        return "succeeded" if row["new_success"] == 1 else "failed"

    def text(value: object) -> str:
        return "—" if value is None or (isinstance(value, float) and pd.isna(value)) or value == "" else str(value)

    return pd.DataFrame({
        "Requested at": ui.local(rows["requested_at"], ctx.tz),
        "Request": rows["outcome"].map({"sent": "sent by MoeGo", "failed": "refused or failed",
                                        "skipped": "skipped"}).fillna(rows["outcome"]),
        "New attempt": rows.apply(new_outcome, axis=1) if not rows.empty else pd.Series(dtype="object"),
        "New status": rows["new_status"].map(lambda s: "—" if s is None or pd.isna(s) else status_text(int(s))),
        "New attempt id": rows["new_delivery_id"].map(text),
        "Error": rows["error"].map(text),
        "By": rows["requested_by"].map(text),
        "Bulk batch": rows["batch_id"].map(text),
    })


def _predictions(tries: pd.DataFrame, ctx: ui.Context) -> None:
    """One line per webhook: what MoeGo does next with the event's latest entry there (its retry policy)."""
    hooks = reads.webhooks(ctx.db_path)
    policies = dict(zip(hooks["id"], hooks["retry_policy"])) if not hooks.empty else {}
    for webhook_id, rows in tries.groupby("webhook_id", sort=False):
        latest = rows.iloc[-1]
        guess = next_retry(delivered_at=latest["delivered_at"].to_pydatetime(), success=bool(latest["success"]),
                           response_status=int(latest["response_status"]), retry_count=int(latest["retry_count"]),
                           policy=policies.get(webhook_id), now=ctx.now)
        when = f" {ui.fmt_time(guess.at, ctx.tz)}:" if guess.at is not None else ":"
        st.caption(f"Next at {md(ctx.label(webhook_id))} ({md(latest['id'])}){when} "
                   f"{md(guess.text)}.")


def render_detail(ctx: ui.Context, delivery_id: str) -> None:
    """Draw the detail view of ``delivery_id`` (a one-line warning when the archive does not have it)."""
    record = reads.delivery(ctx.db_path, delivery_id)
    if record is None:
        st.warning(f"No delivery {code(delivery_id)} in the archive.")
        return
    st.subheader(f"Delivery {code(delivery_id)}")
    st.markdown(f"[Link to this delivery](deliveries?delivery={link_param(delivery_id)})")
    cols = st.columns(4)
    cols[0].metric("Outcome", "Succeeded" if record["success"] else "Failed")
    cols[1].metric("Response", status_text(record["response_status"]))
    cols[2].metric("Duration", ui.fmt_ms(record["duration_ms"]))
    cols[3].metric("Retries", f"{record['retry_count']}", help="Retries MoeGo made before this outcome.")
    _redelivery_controls(ctx, record)
    _facts(record, ctx)
    request, response, attempts, audit = st.tabs(["Request", "Response", "Attempts at this event", "Redeliveries"])
    with request:
        _headers(record["request_headers"], ctx)
        _body(record["request_body"], record["request_body_base64"], event=True, search=ctx.filters.search)
    with response:
        _headers(record["response_headers"], ctx)
        _body(record["response_body"], record["response_body_base64"], search=ctx.filters.search)
    with attempts:
        tries = reads.event_attempts(ctx.db_path, record["event_id"])
        if len(tries) <= 1:
            st.caption("This is the only archived attempt at this event.")
        if not tries.empty:
            redelivered = reads.redelivered_attempts(ctx.db_path, tuple(tries["id"]))
            kinds = attempt_kinds(tries, redelivered)
            local = tries.assign(delivered_at=ui.local(tries["delivered_at"], ctx.tz),
                                 webhook_id=tries["webhook_id"].map(ctx.label))
            st.plotly_chart(charts.attempts_figure(local, delivery_id), key="chart_attempts")
            _predictions(tries, ctx)
            st.dataframe(
                attempts_table(tries, ctx, kinds), hide_index=True, key="attempts_table",
                column_config={
                    "Delivered at": st.column_config.DatetimeColumn("Delivered at", format="YYYY-MM-DD HH:mm:ss.SSS"),
                    "Duration (ms)": st.column_config.NumberColumn("Duration (ms)", format="localized"),
                    "Open": st.column_config.LinkColumn("Open", display_text="open"),
                },
                placeholder=ui.MISSING,
            )
    with audit:
        rows = reads.redeliveries_of(ctx.db_path, delivery_id)
        if rows.empty:
            st.caption("No redelivery requested for this entry.")
        else:
            st.dataframe(audit_table(rows, ctx), hide_index=True, key="redeliveries_table",
                         column_config={"Requested at": st.column_config.DatetimeColumn(
                             "Requested at", format="YYYY-MM-DD HH:mm:ss")}, placeholder=ui.MISSING)
