"""The bundle's one entry point: creates the FunctionApp and registers the blueprints. No logic."""

import azure.functions as func

from manage_http import bp as manage_bp
from migrate_queue import bp as queue_bp
from subscription_timer import bp as timer_bp
from webhook_http import bp as webhook_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(webhook_bp)
app.register_functions(manage_bp)
app.register_functions(timer_bp)
app.register_functions(queue_bp)
