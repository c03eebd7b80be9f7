"""Herald: the whole surface of the service, wired to chalicelib. No logic lives here."""

from chalice import Chalice

from chalicelib.api import admin, alerts, digests, health, jobs, recipients
from chalicelib.api.wiring import health_response, openapi_response, serve, static_response, worker_batch
from chalicelib.config import queue_name, stage_from_env
from chalicelib.digests.runner import handle_scheduled_event
from chalicelib.digests.schedule import SCHEDULE_EXPRESSION
from chalicelib.ops.redrive import REDRIVE_FUNCTION, handle_invocation

app = Chalice(app_name="herald")
STAGE = stage_from_env()
# Every content type reaches the route, so a wrong one gets the contract's error, not Chalice's.
ANY_BODY = ["application/json", "text/plain", "application/x-www-form-urlencoded"]


# --- public ---------------------------------------------------------------------------------
@app.route("/health", methods=["GET"])
def get_health():
    return health_response()


@app.route("/openapi.json", methods=["GET"])
def get_openapi():
    return openapi_response()


@app.route("/admin", methods=["GET"])
def get_dashboard():
    return static_response("dashboard.html", "text/html; charset=utf-8")


# A no-op (no token, no AWS call): the baseline of `make bench`'s API latency figure.
@app.route("/ping", methods=["GET"])
def ping():
    return health.ping_response()


# --- jobs -----------------------------------------------------------------------------------
@app.route("/v1/jobs", methods=["POST"], content_types=ANY_BODY)
def create_job():
    return serve(app.current_request, jobs.create_job)


@app.route("/v1/jobs", methods=["GET"])
def list_jobs():
    return serve(app.current_request, jobs.list_jobs)


@app.route("/v1/jobs/{job_id}", methods=["GET"])
def get_job(job_id):
    return serve(app.current_request, jobs.get_job)


@app.route("/v1/jobs/{job_id}", methods=["DELETE"])
def cancel_job(job_id):
    return serve(app.current_request, jobs.cancel_job)


@app.route("/v1/webhook-secret", methods=["GET"])
def get_webhook_secret():
    return serve(app.current_request, jobs.get_webhook_secret, role="admin")


@app.route("/v1/webhook-secret/rotate", methods=["POST"], content_types=ANY_BODY)
def rotate_webhook_secret():
    return serve(app.current_request, jobs.rotate_webhook_secret, role="admin")


# --- alerts and escalations -----------------------------------------------------------------
@app.route("/v1/alerts/{alert_id}/notify", methods=["POST"], content_types=ANY_BODY)
def notify_alert(alert_id):
    return serve(app.current_request, alerts.notify)


@app.route("/v1/incidents/{incident_id}/escalations", methods=["POST"], content_types=ANY_BODY)
def create_escalation(incident_id):
    return serve(app.current_request, alerts.create_escalation)


@app.route("/v1/incidents/{incident_id}/escalations", methods=["DELETE"])
def acknowledge_incident(incident_id):
    return serve(app.current_request, alerts.acknowledge)


# --- recipients and digests -----------------------------------------------------------------
@app.route("/v1/recipients", methods=["GET"])
def list_recipients():
    return serve(app.current_request, recipients.list_recipients)


@app.route("/v1/recipients/{user_id}", methods=["PUT"], content_types=ANY_BODY)
def put_recipient(user_id):
    return serve(app.current_request, recipients.put_recipient)


@app.route("/v1/recipients/{user_id}", methods=["GET"])
def get_recipient(user_id):
    return serve(app.current_request, recipients.get_recipient)


@app.route("/v1/recipients/{user_id}", methods=["DELETE"])
def delete_recipient(user_id):
    return serve(app.current_request, recipients.delete_recipient)


@app.route("/v1/digests/run", methods=["POST"], content_types=ANY_BODY)
def run_digest():
    return serve(app.current_request, digests.run_digest, role="admin")


# EventBridge (the rule Chalice deploys) every quarter hour: enqueue the digests due at the tick.
@app.schedule(SCHEDULE_EXPRESSION, name="digest_scheduler")
def digest_scheduler(event):
    return handle_scheduled_event(event.to_dict(), event.context)


# --- operations -----------------------------------------------------------------------------
@app.route("/v1/admin/queues", methods=["GET"])
def admin_queues():
    return serve(app.current_request, admin.queues, role="admin")


@app.route("/v1/admin/queues/{name}/dead-letters", methods=["GET"])
def admin_dead_letters(name):
    return serve(app.current_request, admin.dead_letters, role="admin")


@app.route("/v1/admin/queues/{name}/redrive", methods=["POST"], content_types=ANY_BODY)
def admin_start_redrive(name):
    return serve(app.current_request, admin.start_redrive, role="admin")


@app.route("/v1/admin/queues/{name}/redrive/{redrive_id}", methods=["GET"])
def admin_get_redrive(name, redrive_id):
    return serve(app.current_request, admin.get_redrive, role="admin")


# Redrives run here, invoked asynchronously by the API and by themselves, chunk after chunk.
@app.lambda_function(name=REDRIVE_FUNCTION)
def redrive_worker(event, context):
    return handle_invocation(event, context)


# --- workers: one per priority queue, so critical work never waits behind a backlog ---------
@app.on_sqs_message(queue=queue_name(STAGE, "critical"), batch_size=10)
def worker_critical(event):
    return worker_batch(event, "critical")


@app.on_sqs_message(queue=queue_name(STAGE, "high"), batch_size=10)
def worker_high(event):
    return worker_batch(event, "high")


@app.on_sqs_message(queue=queue_name(STAGE, "normal"), batch_size=10)
def worker_normal(event):
    return worker_batch(event, "normal")


@app.on_sqs_message(queue=queue_name(STAGE, "low"), batch_size=10)
def worker_low(event):
    return worker_batch(event, "low")
