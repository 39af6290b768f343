"""The functions the battery's ingress, scheduler and worker processes load under
the ACL user (test_battery_acl_roles.py): the sample functions and those the seed
routes publish to (/api/schedule-sms, /api/schedule-email), as the ingress tests'
registry (tests/ingress/conftest.py), and the webhooks' delivery."""

from functions.email import send_email
from functions.sms import send_sms
from functions.webhook import deliver_webhook
from tests.sample_functions import FUNCTIONS as SAMPLE_FUNCTIONS

FUNCTIONS = (*SAMPLE_FUNCTIONS, send_sms, send_email, deliver_webhook)
