"""Webhooks: their configuration as archived (no secrets), and "send a test event"."""

from __future__ import annotations

import json

import streamlit as st

from collectors.archive.names import MAX_NAME_CHARS, WebhookNameError, name_webhook
from collectors.models import EVENT_TYPES
from collectors.trigger import SentTestEvent, send_test_event_now
from dashboard import reads, ui
from dashboard.present import header_rows, pretty_body, status_text
from dashboard.safe import code, md

ctx = ui.context()
st.title("Webhooks")
st.caption("As last listed by MoeGo. Secret tokens are never stored: only whether one is set and a fingerprint "
           "that changes when it is rotated. Custom header values are redacted.")

hooks = reads.webhooks(ctx.db_path)
if hooks.empty:
    st.info("No webhook archived yet: run a collection.")
    st.stop()

table = hooks.assign(
    name=hooks["id"].map(ctx.label),
    event_types=hooks["event_types"].map(", ".join),
    secret=hooks["secret_fingerprint"].where(hooks["has_secret"], "none").fillna("set"),
    created_time=ui.local(hooks["created_time"], ctx.tz),
    updated_time=ui.local(hooks["updated_time"], ctx.tz),
    last_seen_at=ui.local(hooks["last_seen_at"], ctx.tz),
    deleted_at=ui.local(hooks["deleted_at"], ctx.tz),
)
st.dataframe(
    table, hide_index=True, key="webhooks_table",
    column_order=["name", "id", "endpoint_url", "is_active", "secret", "verify_ssl", "event_types", "content_type",
                  "created_time", "updated_time", "last_seen_at", "deleted_at"],
    column_config={
        "name": st.column_config.TextColumn("Webhook", help="Its short name, else its endpoint's host and path."),
        "id": "Webhook id",
        "endpoint_url": st.column_config.TextColumn("Endpoint", width="large"),
        "is_active": st.column_config.CheckboxColumn("Active"),
        "event_types": "Event types",
        "secret": st.column_config.TextColumn("Secret", help="The secret token's fingerprint, or none."),
        "verify_ssl": st.column_config.CheckboxColumn("Verifies TLS"),
        "content_type": "Content type",
        "created_time": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
        "updated_time": st.column_config.DatetimeColumn("Updated", format="YYYY-MM-DD HH:mm"),
        "last_seen_at": st.column_config.DatetimeColumn("Last listed", format="YYYY-MM-DD HH:mm"),
        "deleted_at": st.column_config.DatetimeColumn("Gone from MoeGo", format="YYYY-MM-DD HH:mm"),
    },
    placeholder=ui.MISSING,
)


def _save_name() -> None:
    """Store the short name typed for the chosen webhook (empty removes it); the result shows below the form."""
    if not ctx.user.is_operator:  # a name shows on every page and in the CSV: an operator's setting
        st.session_state["_name_result"] = ("error", f"Not saved: only operators may name webhooks (you are {ctx.user.name}).")
        return
    webhook_id = st.session_state["name_webhook"]
    try:
        stored = name_webhook(ctx.settings.db_path, webhook_id, st.session_state["name_text"], set_by=ui.actor())
    except WebhookNameError as exc:
        st.session_state["_name_result"] = ("error", f"Not saved: {exc}.")
        return
    reads.clear()
    st.session_state["_name_result"] = ("success", f"{webhook_id} is now shown as “{stored}”." if stored
                                        else f"{webhook_id} is shown by its endpoint again.")


st.subheader("Short names")
st.caption("Give a webhook a short name: every page, chart, filter and the CSV export (column webhook_name) use it. "
           "Leave it empty to show the endpoint's host and path again.")
if ctx.user.is_operator:  # a name shows on every page and in the CSV: an operator's setting
    with st.form("webhook_name"):
        st.selectbox("Webhook", list(hooks["id"]), key="name_webhook", format_func=ctx.labeled)
        st.text_input("Short name", key="name_text", max_chars=MAX_NAME_CHARS, placeholder="e.g. Orders ERP")
        st.form_submit_button("Save name", key="save_name", icon=":material/edit:", on_click=_save_name)
else:
    st.info(f"Only operators name webhooks: you are signed in as {md(ctx.user.name)} (viewer).")
named = st.session_state.pop("_name_result", None)
if named:
    getattr(st, named[0])(md(named[1]))

for hook in hooks.itertuples(index=False):
    with st.expander(md(f"{ctx.label(hook.id)} · {hook.id}")):
        st.text(f"Endpoint: {hook.endpoint_url}")
        st.markdown(f"**Secret token:** {'set, fingerprint ' + code(hook.secret_fingerprint) if hook.has_secret else 'none'}")
        rows = header_rows(hook.headers, ctx.settings.secret_headers)
        st.markdown("**Custom headers**")
        if rows.empty:
            st.caption("None.")
        else:
            st.dataframe(rows, hide_index=True, placeholder=ui.MISSING)
        st.markdown("**Retry policy**")
        st.json(hook.retry_policy or {}, expanded=True)
        if hook.organizations:
            st.markdown("**Organizations:** " + ", ".join(md(f"{o.get('type', '')} {o.get('id', '')}".strip())
                                                         for o in hook.organizations))

st.subheader("Send a test event")
live = hooks[hooks["deleted_at"].isna()]
blocked = ui.blocker(ctx, "send test events")
if blocked:
    st.info(blocked)
    st.stop()
if live.empty:
    st.info("Every archived webhook is gone from MoeGo: nothing to test.")
    st.stop()

_DEFAULT_EVENT = "(MoeGo's default)"
with st.form("test_event"):
    webhook_id = st.selectbox("Webhook", list(live["id"]), key="test_webhook", format_func=ctx.labeled)
    event_type = st.selectbox("Event type", [_DEFAULT_EVENT, *EVENT_TYPES], key="test_event_type")
    payload_text = st.text_area("Payload (optional JSON)", key="test_payload", height=120,
                                placeholder='{"appointmentId": "test-1"}')
    submitted = st.form_submit_button("Send test event", key="send_test", icon=":material/send:", type="primary")

if submitted:
    payload: bytes | None = None
    problem = None
    if payload_text.strip():
        try:
            json.loads(payload_text)
        except json.JSONDecodeError as exc:
            problem = f"The payload is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        payload = payload_text.strip().encode()
    if problem:
        st.error(problem)
    elif ui.may_act(ctx, "send test events"):
        with st.spinner(f"Asking MoeGo to send a test event to {md(webhook_id)}…"):
            sent = send_test_event_now(ctx.settings, webhook_id, payload=payload,
                                       event_type=None if event_type == _DEFAULT_EVENT else event_type,
                                       requested_by=ui.actor())
        reads.clear()
        st.session_state["_test_result"] = sent

result: SentTestEvent | None = st.session_state.get("_test_result")
if result is not None:
    if result.delivery is None:
        st.error(f"MoeGo did not send it: {md(result.error)}")
    else:
        d = result.delivery
        verdict = "answered" if d.success else "failed"
        show = st.success if d.success else st.error
        show(f"Test event sent to {md(ctx.labeled(result.webhook_id))}: the endpoint {verdict} with {status_text(d.response_status)} "
             f"in {ui.fmt_ms(d.duration_ms)}" + (f": {md(d.error)}" if d.error else "."))
        cols = st.columns(3)
        cols[0].metric("Outcome", "Succeeded" if d.success else "Failed")
        cols[1].metric("Response", status_text(d.response_status))
        cols[2].metric("Duration", ui.fmt_ms(d.duration_ms))
        body = pretty_body(d.response_body.decode("utf-8", errors="replace"), False)
        if body.text:
            st.caption("Response body")
            st.code(body.text, language=body.language, wrap_lines=True)
        st.page_link("views/deliveries.py", label=f"Open delivery {md(d.id)}", icon=":material/open_in_new:",
                     query_params={"delivery": d.id})
