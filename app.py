"""Herald: the whole surface of the service, wired to chalicelib. No logic lives here."""

from chalice import Chalice

from chalicelib.api import jobs
from chalicelib.api.wiring import health_response, openapi_response, serve, static_response, worker_batch
from chalicelib.config import queue_name, stage_from_env

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
