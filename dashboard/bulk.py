""""Redeliver every failed entry in this view": count first, confirm, send within MoeGo's rate, cancel.

Flow (widget keys in brackets): [``bulk_count``] reads the view's failed entries and plans them
with :func:`collectors.bulk.plan_bulk` (entries MoeGo already deleted, later-succeeded and duplicate
events skipped), showing
the counts and an ETA; [``bulk_confirm``] sends with :func:`collectors.bulk.bulk_redeliver_and_resync`
under a progress bar; [``bulk_cancel``] (or any other interaction) stops it: Streamlit interrupts
the run, and ``bulk_redeliver`` audits the entries it did not send as ``skipped`` before stopping;
the next run reports the batch from its audit rows. The plan is
tied to the filters it was counted for; changing them discards it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collectors.bulk import BulkPlan, BulkProgress, bulk_redeliver_and_resync, new_batch_id
from collectors.ratelimit import DEFAULT_PER_MINUTE

from . import reads, ui
from .safe import code, md

__all__ = ["MAX_BULK", "render_bulk"]

#: The most entries one bulk redelivery sends (about 20 minutes at MoeGo's rate for one webhook).
MAX_BULK = 2_000
_PLAN = "_bulk_plan"
_BATCH = "_bulk_batch"
_DONE = "_bulk_done"


def _plan(ctx: ui.Context) -> None:
    plan, truncated = reads.bulk_plan(ctx.db_path, ctx.filters, ctx.window, ctx.now, limit=MAX_BULK)
    st.session_state[_PLAN] = {"filters": ctx.filters, "window": ctx.window, "plan": plan, "truncated": truncated}
    st.session_state.pop(_DONE, None)


def _report(batch_id: str, ctx: ui.Context) -> None:
    """Show a finished (or cancelled) batch from its audit rows."""
    counts = reads.bulk_batch_counts(ctx.db_path, batch_id)
    st.info(f"Batch {code(batch_id)}: {counts.get('sent', 0)} sent, {counts.get('failed', 0)} failed, "
            f"{counts.get('skipped', 0)} skipped (see the `redeliveries` audit table).")


def _send(ctx: ui.Context, plan: BulkPlan) -> bool:
    if not ui.may_act(ctx, "redeliver in bulk"):
        return False
    batch_id = new_batch_id()
    st.session_state[_BATCH] = batch_id
    st.caption("Sending. Cancel, or any other click on the page, stops it before the next entry.")
    st.button("Cancel", key="bulk_cancel", icon=":material/cancel:", help="Stops before the next entry is sent.")
    bar = st.progress(0.0, text="Starting…")

    def on_progress(p: BulkProgress) -> None:
        text = f"{p.done} of {p.total} done: {p.sent} sent, {p.failed} failed, {p.skipped} skipped"
        if p.waiting_s > 0:
            text += f" · waiting {p.waiting_s:.0f} s for MoeGo's rate limit"
        bar.progress(p.done / p.total if p.total else 1.0, text=text)

    run = bulk_redeliver_and_resync(ctx.settings, plan, batch_id=batch_id, on_progress=on_progress,
                                    requested_by=ui.actor())
    result, lines = run.result, run.sync_lines
    reads.clear()
    st.session_state.pop(_PLAN, None)
    st.session_state.pop(_BATCH, None)
    st.session_state[_DONE] = {"batch": batch_id, "summary": result.summary, "sync": lines}
    st.toast(f"Bulk redelivery: {md(result.summary)}.", icon=":material/done_all:")
    return True


def render_bulk(ctx: ui.Context) -> None:
    """The bulk redelivery panel for the current view."""
    with st.expander("Redeliver every failed entry in this view", icon=":material/replay:"):
        blocked = ui.blocker(ctx, "redeliver")
        if blocked:
            st.info(blocked)
            return
        stopped = st.session_state.pop(_BATCH, None)
        if stopped is not None:  # set while a batch runs: still here means the run was cancelled or interrupted
            st.warning("Bulk redelivery stopped before the end: the entries not sent yet were left alone. "
                       "A request already in flight finishes on its own (up to the MoeGo timeout); "
                       "the audit table then shows its outcome.")
            _report(stopped, ctx)
            st.session_state.pop(_PLAN, None)
        done = st.session_state.get(_DONE)
        if done:
            st.success(f"Bulk redelivery finished: {md(done['summary'])}.")
            for line in done["sync"]:
                st.caption(md(line))
        st.button("Count failed entries", key="bulk_count", on_click=_plan, args=(ctx,),
                  help="Lists the failed entries of this view and what would be sent, before anything is.")
        held = st.session_state.get(_PLAN)
        if not held:
            return
        if held["filters"] != ctx.filters:
            st.session_state.pop(_PLAN, None)
            st.caption("The filters changed since the count: count again.")
            return
        plan: BulkPlan = held["plan"]
        if held["truncated"]:
            st.warning(f"More than {MAX_BULK:,} failed entries in this view: only the oldest {MAX_BULK:,} are planned. "
                       "Narrow the filters to send the rest in another batch.")
        minutes = plan.eta_seconds() / 60
        st.markdown(
            f"**{plan.total:,}** failed entries in this view: **{len(plan.to_send):,}** to redeliver, "
            f"**{len(plan.skipped):,}** skipped. At {DEFAULT_PER_MINUTE} a minute per webhook this takes "
            f"{'under a minute' if minutes < 1 else f'about {minutes:,.0f} minutes'}."
        )
        if plan.skipped:
            st.dataframe(
                pd.DataFrame([(c.delivery_id, c.webhook_id, c.event_id, why) for c, why in plan.skipped],
                             columns=["delivery", "webhook", "event", "skipped because"]),
                hide_index=True, key="bulk_skipped",
            )
        if st.button(f"Redeliver {len(plan.to_send):,} entries", key="bulk_confirm", type="primary",
                     disabled=not plan.to_send):
            if _send(ctx, plan):
                st.rerun()
