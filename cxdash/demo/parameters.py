"""The demo world's parameters: catalogues, mixes, rates and probabilities, each named and explained.

The generators (``customers``, ``episodes``, ``web``, ``support``, ``billing``, ``marketing``,
``sales``) read everything tunable from here.  Changing a value changes the world: the same seed
then gives different files (``tests/test_demo_world.py`` pins the digest of a small world).
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- time units (seconds)
DAY = 86_400
HOUR = 3_600
MINUTE = 60
YEAR_S = 365.25 * DAY
HISTORY_DAYS = 1095  # customers sign up over the 3 years before as_of
BLOCK_CUSTOMERS = 25_000  # customers per vectorised block (bounds memory; fixed => deterministic)

HUB_EMAIL = "support@helpdesk.example"  # a shared inbox some tickets are filed from
MAX_CUSTOMERS = 9_000_000  # unique 7-digit billing accounts / 555 phone numbers

# ----------------------------------------------------------------------------- people
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Andre",
    "Anika",
    "Arjun",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Chloe",
    "Dana",
    "David",
    "Diego",
    "Elena",
    "Emeka",
    "Emma",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jada",
    "James",
    "Jin",
    "Kai",
    "Kemi",
    "Lars",
    "Layla",
    "Leo",
    "Lina",
    "Lucas",
    "Maya",
    "Mei",
    "Mia",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Quinn",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Sofia",
    "Tariq",
    "Tom",
    "Uma",
    "Victor",
    "Wei",
    "Xena",
    "Yara",
    "Yusuf",
    "Zane",
    "Zoe",
    "Nils",
]
LAST_NAMES = [
    "Abbott",
    "Adeyemi",
    "Alvarez",
    "Baker",
    "Bauer",
    "Berg",
    "Chen",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hansen",
    "Ito",
    "Jensen",
    "Kahn",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Perez",
    "Quinn",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Sousa",
    "Suzuki",
    "Tan",
    "Taylor",
    "Torres",
    "Usman",
    "Vargas",
    "Virtanen",
    "Wagner",
    "Walsh",
    "Wang",
    "Weber",
    "Wilson",
    "Wright",
    "Yamada",
    "Yilmaz",
    "Young",
    "Zhang",
    "Ziegler",
]
COMPANY_SUFFIX = ["Ltd", "LLC", "Group", "Labs", "Logistics", "Studio", "Partners", "Systems"]
DOMAINS = ["example.com", "example.org", "example.net"]
DOMAIN_P = [0.5, 0.3, 0.2]
# how the email's local part is built: first.last, first, f+last, first_last (then a number)
EMAIL_FORMAT_P = [0.4, 0.2, 0.25, 0.15]
P_HAS_PHONE = 0.9
P_MARKETING_CONSENT = 0.62

# ----------------------------------------------------------------------------- segments, regions, plans
SEGMENTS = ["consumer", "smb", "enterprise"]
SEG_CONSUMER, SEG_SMB, SEG_ENTERPRISE = range(3)
SEG_P = [0.72, 0.21, 0.07]
SMB_SEATS = (1, 11)  # integers in [low, high)
ENTERPRISE_SEATS = (10, 61)
ENTERPRISE_DISCOUNT = 0.85  # share of list price an enterprise pays per seat
REGIONS = ["NA-East", "NA-West", "EMEA", "APAC", "LATAM"]
REGION_P = [0.30, 0.22, 0.25, 0.13, 0.10]
REGION_FRICTION = np.array([1.0, 0.85, 1.1, 1.4, 1.25])  # scales the rate of friction episodes
PLANS = ["basic", "plus", "pro"]
PLAN_LABEL = ["Basic", "Plus", "Pro"]
PLAN_CENTS = np.array([1499, 3499, 7999], dtype=np.int64)  # monthly list price per seat
PLAN_P_BY_SEG = np.array([[0.55, 0.32, 0.13], [0.25, 0.45, 0.30], [0.05, 0.25, 0.70]])

# ----------------------------------------------------------------------------- baseline churn
PLAN_HAZARD = np.array([0.06, 0.045, 0.035])  # churn hazard per year (before friction / campaigns)
SEG_HAZARD = np.array([1.25, 0.85, 0.6])  # multiplies the plan's hazard
SEG_TOLERANCE = np.array([1.1, 0.85, 0.6])  # scales the churn a friction episode triggers
PROPENSITY_SIGMA = 0.9  # log-normal spread of each customer's friction propensity (mean 1)
SIGNUP_GROWTH = 1.15  # age = 1094 * u**1.15: signups grow towards the present

# ----------------------------------------------------------------------------- acquisition
CHANNELS = ["organic", "paid_search", "social", "referral", "partner"]
CH_ORGANIC, CH_PAID_SEARCH, CH_SOCIAL, CH_REFERRAL, CH_PARTNER = range(5)
CHANNEL_P = [0.35, 0.22, 0.20, 0.12, 0.11]
CAMPAIGNS = [
    "spring_blast",
    "brand_search",
    "generic_search",
    "retargeting",
    "influencer_collab",
    "summer_social",
    "refer_a_friend",
    "double_referral",
    "partner_webinar",
    "reseller_program",
    "marketplace_listing",
]
SPRING = 0  # the spring_blast campaign: many signups in March-May, most churn within ~90 days
RETARGETING = 3
CAMPAIGN_P_BY_CHANNEL = np.zeros((len(CHANNELS), len(CAMPAIGNS)))  # organic signups have no campaign
CAMPAIGN_P_BY_CHANNEL[CH_PAID_SEARCH, [0, 1, 2, 3]] = [0.32, 0.28, 0.22, 0.18]
CAMPAIGN_P_BY_CHANNEL[CH_SOCIAL, [0, 3, 4, 5]] = [0.36, 0.17, 0.29, 0.18]
CAMPAIGN_P_BY_CHANNEL[CH_REFERRAL, [6, 7]] = [0.75, 0.25]
CAMPAIGN_P_BY_CHANNEL[CH_PARTNER, [8, 9, 10]] = [0.40, 0.35, 0.25]
P_SPRING_FAST_CHURN = 0.75  # spring_blast signups who leave within weeks
SPRING_FAST_GAMMA = (2.2, 16.0)  # (shape, scale) of their days to churn, clipped to [7, 88]
SPRING_FAST_DAYS = (7, 88)

# ----------------------------------------------------------------------------- web analytics
EVENT_NAMES = [
    "home",
    "pricing",
    "login",
    "feature_use",
    "help_page",
    "checkout",
    "checkout_error",
    "payment_page",
    "cancel_page",
    "competitor_compare",
    "downgrade_page",
]
(
    E_HOME,
    E_PRICING,
    E_LOGIN,
    E_FEATURE,
    E_HELP,
    E_CHECKOUT,
    E_CHECKOUT_ERR,
    E_PAYMENT,
    E_CANCEL,
    E_COMPETITOR,
    E_DOWNGRADE,
) = range(len(EVENT_NAMES))
DEVICES = ["desktop", "mobile", "tablet"]
DEVICE_P = [0.55, 0.38, 0.07]
# routine event mixes: (events, probabilities)
LOGGED_IN_MIX = (
    [E_FEATURE, E_HOME, E_HELP, E_PRICING, E_PAYMENT, E_CHECKOUT, E_DOWNGRADE],
    [0.64, 0.08, 0.10, 0.06, 0.04, 0.07, 0.01],
)
ANONYMOUS_MIX = ([E_HOME, E_PRICING, E_HELP], [0.5, 0.3, 0.2])
VISITOR_MIX = ([E_HOME, E_PRICING, E_HELP, E_COMPETITOR], [0.45, 0.27, 0.18, 0.10])
SESSION_SLOTS = 8  # most events in one session
COOKIES_EXTRA = (2, 0.3)  # a customer has 1 + binomial(2, 0.3) cookies (devices, cleared browsers)
COOKIE_BIRTH_JITTER_DAYS = (31, 36)  # a customer's first cookie appears 31-35 days before signup
SESSIONS_BASE, SESSIONS_PER_SQRT_YEAR = 1.5, 4.5  # routine sessions: 2 + poisson(1.5 + 4.5 sqrt(years))
P_SESSION_LOGGED_IN = 0.62
P_SESSION_STARTS_WITH_LOGIN = 0.6
EVENTS_PER_SESSION = 2.0  # 1 + poisson(2.0) events in a routine session
PRE_SIGNUP_SESSIONS = (2, 0.4)  # 1 + binomial(2, 0.4) anonymous sessions in the 30 days before signup
PRE_SIGNUP_EVENTS = 1.5
P_FIRST_LOGIN_HELP = 0.4  # the first session after signup: login, feature_use, maybe help_page
P_CHECKOUT_ERROR_RETRY = (2, 0.35)  # 1 + binomial(2, 0.35) failed checkouts in one episode
P_REPEAT_HELP_VISIT = 0.7  # a repeat-contact episode starts with a help page visit
P_REPEAT_HELP_TWICE = 0.5
P_REPEAT_HELP_LOGGED_IN = 0.6
INTENT_WINDOW_DAYS = 21  # churners show intent 1-21 days before their end date
P_CHURNER_SHOWS_INTENT = 0.85
P_INTENT_CANCEL_PAGE = 0.75
P_INTENT_COMPETITOR = 0.55
P_NO_DOWNGRADE_PAGE = 0.7
P_NO_PRICING_AFTER_COMPARE = 0.7
P_COMPARE_LOGGED_IN = 0.4
INTENT_NOISE_PER_YEAR = 0.06  # anyone, now and then, looks at the cancel page or a competitor
INTENT_NOISE_MIX = ([E_CANCEL, E_COMPETITOR, E_DOWNGRADE], [0.35, 0.35, 0.3])
P_NOISE_LOGGED_IN = 0.6
VISITORS_PER_CUSTOMER = 0.35  # anonymous visitors who never sign up
VISITOR_SESSIONS = (2, 0.3)  # 1 + binomial(2, 0.3)
VISITOR_EVENTS = (3, 0.4)  # 1 + binomial(3, 0.4)
VISITOR_COOKIE_AGE_DAYS = 400
EVENT_GAP_MEAN_S = 80.0  # seconds between events in a session: 3 + exponential(80)
EVENT_GAP_MIN_S = 3

# ----------------------------------------------------------------------------- helpdesk
TICKET_CHANNELS = ["chat", "email", "phone", "web_form"]
T_CHAT, T_EMAIL, T_PHONE, T_WEB = range(4)
TOPICS = ["billing", "login", "checkout", "cancellation", "how_to", "bug"]
TP_BILLING, TP_LOGIN, TP_CHECKOUT, TP_CANCEL, TP_HOWTO, TP_BUG = range(6)
TEAMS = ["support", "billing", "tech"]
TEAM_SUPPORT, TEAM_BILLING, TEAM_TECH = range(3)
TOPIC_TEAM = np.array([1, 2, 2, 0, 0, 2])  # the team that owns each topic
P_TECH_TEAM_FOR_BUG_OR_LOGIN = 0.6  # otherwise support keeps it
TICKETS_BASE, TICKETS_PER_YEAR = 0.35, 0.75  # ordinary tickets: poisson(0.35 + 0.75 years)
ORDINARY_CHANNEL_P = [0.35, 0.3, 0.2, 0.15]
ORDINARY_TOPIC_P = [0.2, 0.15, 0.1, 0.05, 0.35, 0.15]
TRANSFER_CHANNEL_P = [0.35, 0.2, 0.4, 0.05]
CANCEL_CHANNEL_P = [0.3, 0.3, 0.3, 0.1]
QUICK_MEDIAN_S = 3 * HOUR  # an ordinary ticket's time to resolve: log-normal, capped at 2 days
QUICK_SIGMA = 0.9
QUICK_CAP_S = 2 * DAY
QUICK_FLOOR_S = 5 * MINUTE
P_REPEAT_PHONE = 0.7  # the second contact about the same topic is by phone (else chat)
P_REPEAT_TRANSFER = 0.3  # later contacts are transferred
CANCEL_TICKET_WINDOW_DAYS = 10  # churners who ask support to cancel, in their last days
P_CANCEL_TICKET = 0.3
# identifiers the requester leaves, by channel (chat, email, phone, web_form)
P_EMAIL_BY_CHANNEL = np.array([0.85, 1.0, 0.3, 0.97])
P_PHONE_BY_CHANNEL = np.array([0.1, 0.15, 1.0, 0.2])
P_HUB = 0.003  # filed from the shared helpdesk inbox
P_HUB_PHONE = 0.6
PHONE_FORMAT_P = [0.4, 0.3, 0.2, 0.1]  # (555) ..., 555...., 555-..., +1 555 ...
P_CSAT_ANSWERED = 0.4
CSAT_GOOD_P = [0.03, 0.04, 0.1, 0.33, 0.5]  # 1..5 stars after a smooth ticket
CSAT_BAD_P = [0.25, 0.25, 0.25, 0.15, 0.1]  # after friction or a transfer

# ----------------------------------------------------------------------------- marketing
TOUCHES = ["email_sent", "email_open", "email_click", "ad_click"]
TOUCH_SENT, TOUCH_OPEN, TOUCH_CLICK, TOUCH_AD = range(4)
NURTURE = [
    "welcome_series",
    "monthly_newsletter",
    "product_update",
    "upsell_pro",
    "feature_webinar",
    "renewal_reminder",
]
TOUCH_CAMPAIGNS = CAMPAIGNS + NURTURE
TOUCH_CHANNELS = ["email", "social", "search"]
NURTURE_EMAILS = (2, 5)  # integers in [low, high) per opted-in customer
P_OPEN = 0.45
P_CLICK_AFTER_OPEN = 0.35
P_RETARGETED = 0.2
MIXED_CASE_EVERY = 20  # the marketing tool keeps the case typed by 1 in 20 "first.last" addresses

# ----------------------------------------------------------------------------- billing
ONE_OFFS = ["Add-on: extra storage", "Add-on: priority support", "Training session", "Onboarding package"]
ONE_OFF_CENTS = np.array([999, 2499, 14900, 49900], dtype=np.int64)
ONE_OFFS_PER_YEAR = 0.35
CONSUMER_ONE_OFF_P = [0.6, 0.3, 0.1]  # consumers never buy the onboarding package
BUSINESS_ONE_OFF_P = [0.2, 0.3, 0.3, 0.2]
P_ONE_OFF_FAILS = 0.03
P_REFUND = 0.012  # of paid subscription charges
TXN_PAID, TXN_FAILED, TXN_REFUNDED = range(3)
TXN_STATUSES = ["paid", "failed", "refunded"]
BILLING_HOURS = (1, 5)  # the nightly billing run, hours after midnight
# one description per (kind, plan): subscription, retry, refund; then the one-offs
BILL_DESCRIPTIONS = (
    [f"Subscription - {p} plan (monthly)" for p in PLAN_LABEL]
    + [f"Subscription - {p} plan (monthly) - payment retry" for p in PLAN_LABEL]
    + [f"Refund - {p} plan" for p in PLAN_LABEL]
    + ONE_OFFS
)

# ----------------------------------------------------------------------------- sales
OWNERS = ["J. Rivera", "M. Okafor", "S. Lindqvist", "A. Tanaka", "R. Haddad", "L. Moreau", "K. Novak", "D. Mensah"]
OPP_PRODUCTS = ["Basic plan", "Plus plan", "Pro plan", "Seat expansion", "Premium support", "Professional services"]
OPP_STAGES = ["won", "lost", "open"]
STAGE_WON, STAGE_LOST, STAGE_OPEN = range(3)
OPPORTUNITIES = (0, 4)  # business customers have 0-3 deals (the first one won them)
FIRST_DEAL_DAYS = (10, 60)  # the winning deal opened 10-59 days before signup
UPSELL_AFTER_DAYS = 30
UPSELL_DAYS_TO_CLOSE = (14, 90)
P_UPSELL_WON = 0.45
UPSELL_SHARE = (0.1, 0.6)  # an upsell is worth 10-60% of the annual contract

# ----------------------------------------------------------------------------- friction episodes
EP_CHECKOUT, EP_PAYMENT, EP_TRANSFER, EP_REPEAT, EP_SLOW = range(5)
EPISODE_TYPES = 5
EP_RATE = np.array([0.16, 0.08, 0.10, 0.07, 0.06])  # per customer-year at propensity 1
# the chance an episode triggers churn (a failed payment: by whether it was recovered)
EP_TRIGGER_P = np.array([0.3, 0.0, 0.25, 0.5, 0.3])
P_TRIGGER_PAYMENT_RECOVERED = 0.1
P_TRIGGER_PAYMENT_LOST = 0.6
TRIGGER_DELAY_GAMMA = (2.0, 9.0)  # days from the episode's end to churn: 2 + gamma(2, 9)
TRIGGER_MIN_DAYS = 2
P_CHECKOUT_HELP = 0.45  # a help page visit after the failed checkouts
P_FOLLOW_UP_TICKET = 0.25  # a ticket after a checkout error or a failed payment
P_PAYMENT_RECOVERED = 0.7  # the retry a few days later succeeds
P_PAYMENT_PAGE_VISIT = 0.45
TRANSFERS = (2, 0.3)  # a transferred ticket is transferred 1 + binomial(2, 0.3) times
EPISODE_TOPIC_P = [0.25, 0.2, 0.15, 0.0, 0.1, 0.3]  # topics of transferred and slow tickets
P_THIRD_REPEAT = 0.45  # a repeat-contact episode has 2 or 3 tickets within 7 days
