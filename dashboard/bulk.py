""""Redeliver every failed entry in this view": count first, confirm, then a job the page does not hold.

Flow (widget keys in brackets): [``bulk_count``] reads the view's failed entries and plans them with
:func:`collectors.bulk.plan_bulk` (entries MoeGo already deleted, later-succeeded and duplicate events
skipped), showing the counts and an estimate from the rate limit and each webhook's recent durations
(:func:`collectors.jobs.estimate_seconds`); [``bulk_confirm``] stores the plan as a job
(:func:`collectors.jobs.submit_bulk`) and returns. A background worker of the dashboard process sends it;
its progress, elapsed and remaining time and Cancel are in the frame of every page
(:mod:`dashboard.jobs_panel`), so clicks, other pages and even a restart do not stop it. The plan is
tied to the filters it was counted for; changing them discards it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collectors.bulk import BulkPlan
from collectors.jobs import submit_bulk
from collectors.ratelimit import DEFAULT_PER_MINUTE

from . import reads, ui
from .jobs_panel import duration_text, watch

__all__ = ["MAX_BULK", "render_bulk"]

#: The most entries one bulk redelivery sends (about 20 minutes at MoeGo's rate for one webhook).
MAX_BULK = 2_000
_PLAN = "_bulk_plan"


def _plan(ctx: ui.Context) -> None:
    plan, truncated = reads.bulk_plan(ctx.db_path, ctx.filters, ctx.window, ctx.now, limit=MAX_BULK)
    estimate = reads.bulk_estimate(ctx.db_path, plan, ctx.now, timeout_s=ctx.settings.timeout_s)
    st.session_state[_PLAN] = {"filters": ctx.filters, "plan": plan, "truncated": truncated, "estimate": estimate}


def _submit(ctx: ui.Context) -> None:
    if not ui.may_act(ctx, "redeliver in bulk"):
        return
    held = st.session_state.pop(_PLAN, None)
    if not held:
        return
    job_id = submit_bulk(ctx.settings.db_path, held["plan"], requested_by=ui.actor(), estimate_s=held["estimate"])
    watch(job_id)
    reads.clear()


def render_bulk(ctx: ui.Context) -> None:
    """The bulk redelivery panel for the current view."""
    with st.expander("Redeliver every failed entry in this view", icon=":material/replay:"):
        blocked = ui.blocker(ctx, "redeliver")
        if blocked:
            st.info(blocked)
            return
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
        st.markdown(
            f"**{plan.total:,}** failed entries in this view: **{len(plan.to_send):,}** to redeliver, "
            f"**{len(plan.skipped):,}** skipped."
        )
        if plan.to_send:
            st.caption(f"Estimated time: {duration_text(held['estimate'])}. Each redelivery waits for the endpoint "
                       f"(its recent mean duration, at most the timeout), and each webhook gets at most "
                       f"{DEFAULT_PER_MINUTE} a minute. It runs in the background: you can leave this page.")
        if plan.skipped:
            st.dataframe(
                pd.DataFrame([(c.delivery_id, ctx.label(c.webhook_id), c.event_id, why) for c, why in plan.skipped],
                             columns=["Delivery id", "Webhook", "Event id", "Skipped because"]),
                hide_index=True, key="bulk_skipped", placeholder=ui.MISSING,
            )
        st.button(f"Redeliver {len(plan.to_send):,} entries", key="bulk_confirm", type="primary",
                  disabled=not plan.to_send, on_click=_submit, args=(ctx,))
