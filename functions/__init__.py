"""The functions this deployment runs, listed explicitly; loaded as `functions:FUNCTIONS`."""

from functions.booking import cancel_booking, remind_booking
from functions.campaign import cancel_campaign, launch_campaign
from functions.cleanup import cleanup
from functions.email import send_email
from functions.payment import payment_paid, remind_payment
from functions.report import generate_report
from functions.sms import send_sms
from functions.webhook import deliver_webhook
from functions.whatsapp import send_whatsapp

FUNCTIONS = (
    send_sms,
    send_whatsapp,
    send_email,
    deliver_webhook,
    remind_booking,
    cancel_booking,
    remind_payment,
    payment_paid,
    launch_campaign,
    cancel_campaign,
    cleanup,
    generate_report,
)
