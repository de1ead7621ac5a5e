"""Incidents: unresolved first, with acknowledge/snooze/resolve; history below; failed deliveries one click away.

Widget keys (for tests and the browser test): ``incident_actor`` (who you are), per incident ``ack_<id>``,
``snooze_span_<id>``, ``snooze_<id>``, ``resolve_<id>``, ``count_<id>`` and ``redeliver_<id>`` (recovery).
Reads come from :mod:`dashboard.reads`; the actions are :mod:`collectors.alerts.actions`; this page only draws.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from collectors.alerts.actions import acknowledge_incident, queue_incident_redelivery, resolve_incident, snooze_incident
from collectors.alerts.incidents import Incident, IncidentError
from collectors.archive import ArchiveError
from dashboard import reads, ui
from dashboard.incidents_ui import failed_link_params, plain
from dashboard.jobs_panel import duration_text, watch

SNOOZE_SPANS = {"1 hour": timedelta(hours=1), "4 hours": timedelta(hours=4), "1 day": timedelta(days=1),
                "1 week": timedelta(days=7)}
_DONE = "_incident_done"
_PLANS = "_incident_plans"

ctx = ui.context()
st.title("Incidents")
st.caption("Opened by the alert rules after each collector pass; resolved when the condition clears. "
           "Acknowledge to stop reminders, snooze to pause them, resolve when it is handled.")
if ctx.user.via == "local":  # the one user of a console without login: they may say who they are
    actor = st.text_input("Your name", key="incident_actor", max_chars=60,
                          placeholder=f"recorded with each action (default: {ui.actor()})").strip() or ui.actor()
else:  # signed in: the audit names the login, never a typed name
    actor = ui.actor()
    st.caption(f"Acting as {plain(actor)} ({ctx.user.role}).")
may_change = ctx.user.is_operator
if not may_change:
    st.info(f"You are signed in as {plain(ctx.user.name)} (viewer): only operators may acknowledge, snooze or "
            "resolve incidents.", icon=":material/lock:")


def _act(action: str, incident_id: int, span: timedelta | None = None) -> None:
    """Run one incident action for the person named above; keep its one-line outcome for the next run."""
    if not ctx.user.is_operator:  # a disabled button is no permission check
        st.session_state[_DONE] = ("error", f"Only operators may change incidents: {ctx.user.name} is a viewer.")
        return
    try:
        if action == "ack":
            done = acknowledge_incident(ctx.settings, incident_id, by=actor)
        elif action == "snooze":
            done = snooze_incident(ctx.settings, incident_id, span or timedelta(hours=1), by=actor)
        else:
            done = resolve_incident(ctx.settings, incident_id, by=actor)
        st.session_state[_DONE] = ("success", f"Incident #{done.id} is {done.state} ({actor}).")
    except IncidentError as exc:
        st.session_state[_DONE] = ("error", str(exc))
    reads.clear()


def _count(incident: Incident) -> None:
    st.session_state.setdefault(_PLANS, {})[incident.id] = reads.incident_recovery_plan(ctx.db_path, incident, ctx.now)


def _redeliver(incident: Incident) -> None:
    if ui.blocker(ctx, "redeliver") is not None:  # a disabled button is no permission check
        st.session_state[_DONE] = ("error", ui.blocker(ctx, "redeliver"))
        return
    try:
        queued = queue_incident_redelivery(ctx.settings, incident.id, by=actor)
        watch(queued.job_id)
        st.session_state[_DONE] = ("success", f"Incident #{incident.id}: {queued.to_send:,} failed events queued for "
                                   f"redelivery ({duration_text(queued.estimate_s)}). It runs in the background: "
                                   "its progress and Cancel are at the top of every page, and its outcome goes "
                                   "into this incident's history.")
    except (IncidentError, ArchiveError) as exc:  # one line on the page, never a traceback
        st.session_state[_DONE] = ("error", f"Redelivery for incident #{incident.id} was not queued: {exc}")
    st.session_state.get(_PLANS, {}).pop(incident.id, None)
    reads.clear()


def _details(incident: Incident) -> None:
    events, messages = reads.incident_history(ctx.db_path, incident.id), reads.incident_messages(ctx.db_path, incident.id)
    st.dataframe(pd.DataFrame([(ui.fmt_time(e.at, ctx.tz), e.action, e.actor, e.note or "") for e in events],
                              columns=["When", "What", "Who", "Note"]), hide_index=True, key=f"history_{incident.id}",
                 placeholder=ui.MISSING)
    if messages:
        st.dataframe(pd.DataFrame([(m.kind, m.channel, m.status, m.attempts, m.error or "") for m in messages],
                                  columns=["Message", "Channel", "Status", "Attempts", "Error"]),
                     hide_index=True, key=f"messages_{incident.id}", placeholder=ui.MISSING)


def _recovery(incident: Incident) -> None:
    if not incident.about_deliveries:
        return
    st.page_link("views/deliveries.py", label="Failed deliveries of this incident", icon=":material/list_alt:",
                 query_params=failed_link_params(incident, ctx.now))
    reason = ui.blocker(ctx, "redeliver")
    if reason is not None:
        st.caption(reason)
        return
    plan = st.session_state.get(_PLANS, {}).get(incident.id)
    if plan is None:
        st.button("Count failed events to redeliver", key=f"count_{incident.id}", on_click=_count, args=(incident,),
                  help="Events whose every attempt failed; skips those that later succeeded or that MoeGo deleted.")
        return
    st.text(f"{len(plan.to_send):,} failed events to redeliver, {len(plan.skipped):,} skipped "
            "(later succeeded, duplicate, or deleted by MoeGo).")
    st.button(f"Redeliver {len(plan.to_send):,} events", key=f"redeliver_{incident.id}", type="primary",
              disabled=not plan.to_send, on_click=_redeliver, args=(incident,))


done = st.session_state.pop(_DONE, None)
if done:
    (st.success if done[0] == "success" else st.error)(plain(done[1]))

incidents = reads.incidents(ctx.db_path)
active = [i for i in incidents if i.active]
resolved = [i for i in incidents if not i.active]

st.subheader(f"Unresolved ({len(active)})")
if not active:
    st.success("Nothing is wrong that a rule can see.", icon=":material/check_circle:")
for incident in active:
    with st.container(border=True, key=f"incident_{incident.id}"):
        state = incident.state.upper()
        if incident.state == "snoozed" and incident.snoozed_until:
            state += f" until {ui.fmt_time(incident.snoozed_until, ctx.tz)}"
        st.markdown(f"**#{incident.id} · {plain(state)} · {plain(incident.subject)}**")
        st.text(incident.summary)
        st.caption(f"Opened {ui.fmt_time(incident.opened_at, ctx.tz)} · last seen {ui.fmt_time(incident.last_seen_at, ctx.tz)}"
                   + (f" · webhook {plain(incident.webhook_id)}" if incident.webhook_id else ""))
        cols = st.columns([1, 1, 1, 1])
        cols[0].button("Acknowledge", key=f"ack_{incident.id}", on_click=_act, args=("ack", incident.id),
                       disabled=incident.state == "acknowledged" or not may_change, icon=":material/done:")
        span = cols[1].selectbox("Snooze for", list(SNOOZE_SPANS), key=f"snooze_span_{incident.id}",
                                 label_visibility="collapsed")
        cols[2].button("Snooze", key=f"snooze_{incident.id}", on_click=_act, disabled=not may_change,
                       args=("snooze", incident.id, SNOOZE_SPANS[span]), icon=":material/snooze:")
        cols[3].button("Resolve", key=f"resolve_{incident.id}", on_click=_act, args=("resolve", incident.id),
                       disabled=not may_change, icon=":material/task_alt:")
        _recovery(incident)
        with st.expander("History and messages"):
            _details(incident)

st.subheader(f"History ({len(resolved)} resolved)")
if not resolved:
    st.caption("No resolved incidents yet.")
for incident in resolved:
    by = "the condition cleared" if incident.resolved_by == "auto" else f"by {incident.resolved_by}"
    with st.expander(f"#{incident.id} · {plain(incident.subject)} · resolved {ui.fmt_time(incident.resolved_at, ctx.tz)} ({plain(by)})"):
        st.text(incident.summary)
        st.caption(f"Opened {ui.fmt_time(incident.opened_at, ctx.tz)}")
        _recovery(incident)
        _details(incident)
