"""The columns of each table as storage.personal_data.PLAN was last reviewed against (what erasing a person does to
each table, docs/data.md). A column added by a migration fails tests/storage/test_personal_data.py until it is
written here, once its table's rule (and erase_person, export_person) says what becomes of what it holds."""

REVIEWED_COLUMNS: dict[str, tuple[str, ...]] = {
    "access_codes": (
        "id", "code", "course_id", "uses", "uses_left", "days", "expires_at", "disabled_at", "created_by",
        "created_at",
    ),
    "alembic_version": ("version_num",),
    "admin_audit": ("id", "at", "identity", "command", "arguments", "outcome"),
    "admin_roles": ("id", "identity", "role", "scope", "granted_by", "granted_at"),
    "admin_sessions": (
        "id", "identity", "link_hash", "link_expires_at", "used_at", "session_hash", "session_expires_at",
        "signed_out_at", "created_at",
    ),
    "broadcast_recipients": ("broadcast_id", "user_id", "conversation_id"),
    "broadcasts": (
        "id", "text", "segment", "status", "created_by", "created_at", "preview_count", "confirmed_at", "recipients",
        "queued", "cursor_user_id", "queued_all_at", "cancelled_at",
    ),
    "certificates": (
        "id", "code", "user_id", "course_id", "learner_name", "course_title", "issued_at", "issued_on", "file_path",
    ),
    "channel_identities": ("id", "user_id", "channel", "external_id", "created_at"),
    "clock_cursors": ("name", "until"),
    "clock_runs": ("id", "job", "scheduled_for", "owner", "finished_at", "outcome", "error"),
    "conversations": (
        "id", "channel", "chat_id", "user_id", "state", "lease_owner", "lease_until", "created_at", "last_inbound_at",
        "opted_out_at", "shared", "refused_by_platform",
    ),
    "course_modules": ("id", "course_id", "slug", "title", "position", "retired"),
    "courses": (
        "id", "slug", "title", "description", "language", "access", "price_minor", "currency", "price_period",
        "free_preview_lessons", "pass_mark", "source", "published", "content_hash", "created_at", "imported_at",
    ),
    "dashboard_figures": ("name", "figures", "computed_at", "seconds"),
    "enrollments": (
        "id", "user_id", "course_id", "status", "current_lesson_id", "current_part", "started_at", "completed_at",
        "updated_at",
    ),
    "entitlements": ("id", "user_id", "course_id", "source", "reference", "granted_at", "expires_at", "revoked_at"),
    "inbound_messages": (
        "id", "channel", "platform_id", "conversation_id", "seq", "sender_id", "payload", "status", "attempts",
        "error", "received_at", "processed_at",
    ),
    "inbound_sequences": ("conversation_id", "last_seq"),
    "knowledge_allowances": ("learner", "minute_start", "minute_questions", "day", "day_tokens"),
    "knowledge_answer_cache": ("key", "answer", "created_at", "asked_by"),
    "knowledge_model_calls": ("day", "calls"),
    "knowledge_questions": (
        "id", "user_id", "asked_at", "question", "normalized", "outcome", "reason", "course", "topic",
    ),
    "leader_leases": ("name", "owner", "until"),
    "learners": (
        "user_id", "status", "consent_at", "lesson_time", "lesson_days", "next_lesson_at", "quiet_start", "quiet_end",
        "paused_until", "daily_goal", "language_chosen", "course_id", "points", "streak_days", "best_streak",
        "last_active_on", "home_conversation_id", "link_code", "link_code_expires_at", "created_at", "updated_at",
    ),
    "lesson_progress": ("id", "user_id", "lesson_id", "parts_seen", "started_at", "completed_at", "score"),
    "lessons": (
        "id", "course_id", "module_id", "slug", "title", "minutes", "parts", "position", "retired", "source_file",
        "content_hash", "updated_at",
    ),
    "link_attempts": ("id", "identity", "source", "at"),
    "nudge_log": (
        "id", "user_id", "kind", "step", "template", "idempotency_key", "outcome", "created_at", "sent_at",
        "came_back", "settled_at",
    ),
    "nudge_template_stats": ("kind", "template", "sent", "came_back", "updated_at"),
    "offered_choices": ("id", "conversation_id", "member", "value", "offered_at"),
    "outbox_messages": (
        "id", "conversation_id", "channel", "chat_id", "payload", "status", "attempts", "next_attempt_at",
        "lease_until", "platform_message_id", "delivery_status", "delivery_error", "last_error", "idempotency_key",
        "parts_sent", "inbound_message_id", "created_at", "sent_at", "refusal",
    ),
    "payment_charges": (
        "id", "payment_id", "reference", "amount_minor", "charged_at", "refunded_at", "paid_by", "refunded_minor",
    ),
    "payment_events": ("id", "provider", "event_id", "type", "payload", "outcome", "received_at"),
    "payments": (
        "id", "user_id", "offered_to", "course_id", "provider", "reference", "charge_reference", "amount_minor",
        "discount_minor", "currency", "period", "subscription_reference", "subscription_status", "period_end",
        "status", "channel", "chat_id", "sender_id", "checkout_url", "receipt_url", "note", "created_at", "paid_at",
        "refunded_at", "renewal_cancelled_at",
    ),
    "question_cards": (
        "id", "user_id", "question_id", "card", "due", "last_rating", "last_answer", "attempts", "correct",
        "last_reviewed_at", "scored_right",
    ),
    "questions": (
        "id", "course_id", "lesson_id", "slug", "kind", "prompt", "choices", "correct_choice", "is_true",
        "accepted_answers", "explanation", "position", "retired", "content_hash",
    ),
    "scheduled_lessons": ("user_id", "local_date", "due_at", "outcome", "created_at", "held_until"),
    "scheduler_jobs": ("id", "next_run_time", "job_state"),
    "slack_installations": (
        "id", "enterprise_id", "team_id", "is_enterprise_install", "app_id", "enterprise_name", "enterprise_url",
        "team_name", "bot_token", "bot_id", "bot_user_id", "bot_scopes", "bot_refresh_token", "bot_token_expires_at",
        "user_id", "user_token", "user_scopes", "user_refresh_token", "user_token_expires_at", "incoming_webhook_url",
        "incoming_webhook_channel", "incoming_webhook_channel_id", "incoming_webhook_configuration_url", "token_type",
        "installed_at",
    ),
    "slack_oauth_states": ("state", "expires_at"),
    "team_admins": ("id", "channel", "workspace", "member", "added_by", "added_at"),
    "team_lesson_posts": ("id", "team_id", "local_date", "lesson_id", "posted_at"),
    "team_members": (
        "id", "team_id", "member", "user_id", "status", "hidden", "direct_chat", "started_at", "joined_at",
        "changed_at", "standing_read", "own_course_id", "own_lesson_time", "own_lesson_days",
    ),
    "teams": (
        "id", "channel", "chat_id", "workspace", "course_id", "mode", "lesson_time", "lesson_days", "timezone",
        "locale", "leaderboard_on", "status", "next_lesson_id", "created_by", "digest_chat", "created_at",
        "updated_at", "members_synced_at",
    ),
    "users": ("id", "display_name", "locale", "timezone", "created_at", "last_active_at"),
}
