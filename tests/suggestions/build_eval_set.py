"""Builds the labelled evaluation set of the suggestion engines (eval_tune.jsonl, eval_holdout.jsonl).

Run ``python -m tests.suggestions.build_eval_set`` after changing a case. Every case is labelled
by what a person reading the message would want: ``action`` true when the message asks the
owner to do something they would track as a task, ``due`` the date it states (null when it
states none or only a vague one). Every third case of each category goes to the holdout, which
the rules engine was never tuned on.

Weekdays for reading the dates: 2026-02-02, 03-02, 03-09, 03-16, 04-06 and 04-13 are Mondays.
"""
from __future__ import annotations

import hashlib
import json
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
import datetime as dt

HERE = Path(__file__).parent
ALICE = "alice@example.com"
ALICE_PHONE = "+14155550100"

# (category, fields). Fields: frm, to, cc, subject, body, sent (ISO, UTC), tz, action, due, headers,
# calendar (an invite.ics part), owner.
CASES: list[tuple[str, dict]] = []


def case(category: str, frm: str, subject: str, body: str, action: bool, due: str | None = None, *,
         sent: str = "2026-03-04T14:00:00Z", tz: str = "UTC", to: str = ALICE, cc: str = "",
         headers: dict | None = None, calendar: bool = False, owner: str = ALICE) -> None:
    CASES.append((category, dict(frm=frm, to=to, cc=cc, subject=subject, body=body, sent=sent, tz=tz,
                                 action=action, due=due, headers=headers or {}, calendar=calendar, owner=owner)))


def sms(category: str, frm: str, body: str, action: bool, due: str | None = None, *,
        sent: str = "2026-03-04T17:00:00Z", tz: str = "America/Los_Angeles", to: str = ALICE_PHONE) -> None:
    CASES.append((category, dict(sms={"from": frm, "to": to, "body": body, "sent_at": sent}, tz=tz, action=action,
                                 due=due, owner=ALICE_PHONE)))


# ------------------------------------------------------------------------------------ requests
case("request", "Bob Miller <bob.miller@acmecorp.com>", "Q4 proposal",
     "Hi Alice,\n\nCould you review the Q4 proposal by Friday? I want to send it to the client on Monday.\n\nThanks,\nBob",
     True, "2026-03-06")
case("request", "Priya Raman <priya@northwind.io>", "NDA for the pilot",
     "Hello Alice,\n\nAttached is the mutual NDA from our legal team. Please sign and return it no later than next "
     "Monday so we can start the pilot.\n\nBest regards,\nPriya Raman\nHead of Partnerships, Northwind",
     True, "2026-03-09")
case("request", "Tom Becker <tom@beckerlaw.de>", "Engagement letter",
     "Alice - we need the signed engagement letter before the 20th, otherwise the filing slips to next quarter.\n\nTom",
     True, "2026-03-20")
case("request", "Jenna Ortiz <jenna.ortiz@globex.com>", "Pricing sheet",
     "Hey Alice, can you send me the updated pricing sheet tomorrow? Finance is asking.\n\nJ", True, "2026-03-05")
case("request", "Marco Bianchi <marco@fabbrica.it>", "Shipment dates",
     "Hi Alice,\n\nPlease confirm the shipment dates for order 4471 by EOD.\n\nRegards,\nMarco", True, "2026-03-04")
case("request", "Sam Lee <sam.lee@initech.com>", "Kickoff",
     "Hi Alice, would you be able to schedule the kickoff with the Initech team sometime next week? Any day but "
     "Friday works for us.\n\nSam", True, "2026-03-09")
case("request", "Dana Whitfield <dana@whitfieldcap.com>", "Term sheet comments",
     "Alice,\n\nI'd appreciate your comments on the term sheet by March 12. We're meeting the founders on the 13th.\n\n"
     "Dana", True, "2026-03-12")
case("request", "Olivia Chen <olivia.chen@contoso.com>", "Budget approval",
     "Hi Alice,\n\nThe marketing budget for April is in the shared folder. I need you to approve it before "
     "2026-03-18 so purchasing can release the POs.\n\nThank you,\nOlivia", True, "2026-03-18")
case("request", "Raj Patel <raj@patelconsulting.net>", "Call about the renewal",
     "Hi Alice, can we hop on a call Thursday to go over the renewal? 30 minutes should do.\n\nRaj", True, "2026-03-05")
case("request", "Grace Kim <grace.kim@fabrikam.com>", "Headcount plan",
     "Alice,\n\nLet me know by end of the week whether we're going ahead with the two extra hires.\n\nGrace",
     True, "2026-03-06")
case("request", "Henrik Nilsson <henrik@nordlys.se>", "Invoice 2026-031",
     "Hi Alice,\n\nOur invoice 2026-031 is still open. Could you check with accounts payable and let me know when "
     "we can expect payment?\n\nKind regards,\nHenrik", True, None)
case("request", "Lucy Grant <lucy@grantdesign.co>", "Logo files",
     "Hi! Can you send over the final logo files (SVG + PNG)? We're printing the banners this weekend.\n\nLucy",
     True, None)
case("request", "Peter Novak <peter.novak@stellarbank.com>", "KYC documents",
     "Dear Ms. Moreau,\n\nTo complete the account opening we still require a certified copy of the articles of "
     "incorporation. Kindly upload it to the portal by April 10, 2026.\n\nYours sincerely,\nPeter Novak\n"
     "Relationship Manager", True, "2026-04-10", sent="2026-04-01T09:30:00Z")
case("request", "Mia Fischer <mia@fischer-events.de>", "Venue walkthrough",
     "Hi Alice, are you free for a walkthrough of the venue on Tuesday afternoon? The caterer will be there "
     "as well.\n\nMia", True, "2026-03-10")
case("request", "Chris Doyle <chris.doyle@umbrella.org>", "Board deck",
     "Alice,\n\nPlease put together three slides on the EMEA pipeline for the board deck. I need them by "
     "Wednesday noon.\n\nThanks,\nChris", True, "2026-03-11")
case("request", "Nora Haddad <nora@haddad.legal>", "Signature needed",
     "Hi Alice,\n\nThe contract needs your signature before we can release the funds. DocuSign link is in "
     "the previous email.\n\nNora", True, None)
case("request", "Ben Carter <ben.carter@acmecorp.com>", "Re: Customer escalation",
     "Alice, this is urgent - Megacorp's CTO is threatening to cancel. Call me as soon as you see this.\n\n"
     "Ben\n\nOn Wed, Mar 4, 2026 at 8:02 AM Alice <alice@example.com> wrote:\n> Any news from Megacorp?\n",
     True, None)
case("request", "Ella Svensson <ella@svensson.se>", "Reference letter",
     "Dear Alice,\n\nI'm applying for the MBA program at INSEAD and was wondering if you would be willing to write "
     "a short reference letter for me. The deadline is March 31.\n\nWarm regards,\nElla", True, "2026-03-31")
case("request", "Kevin O'Brien <kevin@obrienbuilders.ie>", "Site visit",
     "Hi Alice,\n\nWould Monday 16 March suit you for the site visit? If so, please confirm and I'll book the "
     "inspector.\n\nKevin", True, "2026-03-16")
case("request", "Ana Lima <ana.lima@brasilfoods.com.br>", "Samples",
     "Hello Alice,\n\nDid you receive the samples we sent last week? Please let me know your feedback so we can "
     "finalise the order.\n\nAna", True, None)
case("request", "Jack Turner <jack@turnerpr.com>", "Press quote",
     "Hi Alice - the journalist from TechDaily wants a quote from you on the acquisition. Can you give me two or "
     "three sentences by 3pm tomorrow?\n\nJack", True, "2026-03-05")
case("request", "Sofia Rossi <sofia.rossi@contoso.com>", "Travel approval",
     "Hi Alice,\n\nI've submitted my travel request for the Lisbon conference in Concur. Could you approve it when "
     "you get a chance?\n\nThanks!\nSofia", True, None)
case("request", "Ethan Brooks <ethan@brooksvc.com>", "Intro",
     "Alice, great meeting you at SaaStr. Would you mind introducing me to your CFO? Happy to send a forwardable "
     "blurb.\n\nEthan", True, None)
case("request", "Laura Schmidt <laura.schmidt@siemens-partner.de>", "Data export",
     "Hi Alice,\n\nFor the migration we need a full export of the customer table. Can your team provide it no later "
     "than Friday 13 March?\n\nBest,\nLaura", True, "2026-03-13")
case("request", "Omar Farouk <omar@faroukco.ae>", "Meeting in Dubai",
     "Dear Alice,\n\nI will be in London next week. Could we meet for coffee on Wednesday or Thursday?\n\n"
     "Best regards,\nOmar", True, "2026-03-11")
case("request", "Hannah Wright <hannah.wright@initech.com>", "Security questionnaire",
     "Hi Alice,\n\nOur procurement team requires the attached security questionnaire to be completed before we can "
     "sign. Could you get it back to us by the end of next week?\n\nHannah", True, "2026-03-13")
case("request", "Diego Martinez <diego@martinez-imports.mx>", "PO 8812",
     "Alice, please send the revised PO for 8812 with the new quantities. The factory is waiting on it.\n\nDiego",
     True, None)
case("request", "Rachel Green <rachel.green@fabrikam.com>", "Offsite agenda",
     "Hi Alice,\n\nWhat topics would you like on the offsite agenda? I'm finalising it on Thursday.\n\nRachel",
     True, "2026-03-05")
case("request", "Victor Hugo <victor@hugo-partners.fr>", "Q1 forecast",
     "Alice,\n\nCan you update the Q1 forecast in the CRM before the board meeting on the 12th?\n\nVictor",
     True, "2026-03-12")
case("request", "Isabel Cruz <isabel.cruz@globex.com>", "Renewal quote",
     "Hi Alice, the customer asked for a renewal quote with a 3-year term. Could you prepare one and send it to "
     "me? No rush - sometime in the next couple of weeks is fine.\n\nIsabel", True, None)
case("request", "Matt Howard <matt@howardlogistics.com>", "Delivery window",
     "Good morning Alice,\n\nJust checking whether the 8am delivery window on Monday still works for your "
     "warehouse? Please confirm.\n\nMatt", True, "2026-03-09")
case("request", "Zoe Adams <zoe.adams@contoso.com>", "Performance reviews",
     "Hi Alice,\n\nReminder that the self-assessments for your team are due April 17. Please make sure all five "
     "are submitted in Workday.\n\nZoe\nPeople Team", True, "2026-04-17", sent="2026-04-06T08:00:00Z")
case("request", "Liam Walsh <liam.walsh@acmecorp.com>", "Demo environment",
     "Alice - the demo environment is down again. Can you ping the vendor and find out what's going on?\n\nLiam",
     True, None)
case("request", "Yuki Tanaka <yuki.tanaka@sakura-trading.jp>", "Contract draft",
     "Dear Alice,\n\nThank you for the call today. Could you please send us the draft contract by Friday, March 6? "
     "We will review it over the weekend.\n\nBest regards,\nYuki Tanaka", True, "2026-03-06",
     sent="2026-03-03T23:30:00Z", tz="Asia/Tokyo")
case("request", "Carlos Mendes <carlos@mendes.pt>", "Tomorrow's workshop",
     "Alice, can you bring the printed handouts to tomorrow's workshop? 25 copies.\n\nCarlos", True, "2026-03-07",
     sent="2026-03-05T23:30:00Z", tz="Europe/Berlin")
case("request", "Emily Stone <emily@stone-architects.com>", "Floor plan",
     "Hi Alice,\n\nHere is the revised floor plan. Can you take a look and tell me if the meeting rooms are big "
     "enough?\n\nEmily", True, None)
case("request", "Frank Weber <frank.weber@weber-it.de>", "Access rights",
     "Hi Alice,\n\nplease grant me access to the finance share, I need it for the audit starting next Monday.\n\n"
     "Thanks\nFrank", True, "2026-03-09")
case("request", "Paula Jones <paula.jones@umbrella.org>", "Speaker slot",
     "Hello Alice,\n\nWe'd love to have you speak at our summit in May. Would you be interested? If yes, let me "
     "know by April 15 so I can hold the slot.\n\nPaula", True, "2026-04-15", sent="2026-04-01T15:00:00Z")
case("request", "Steve Rogers <steve.rogers@shieldtech.com>", "Expense report",
     "Alice,\n\nYour February expense report is missing two receipts (Uber, 2/14 and hotel, 2/18). Please attach "
     "them and resubmit.\n\nSteve\nFinance", True, None)
case("request", "Amara Okafor <amara@okafor-ventures.ng>", "Pitch deck feedback",
     "Hi Alice,\n\nWe've reworked the deck based on your notes. Would you have 20 minutes early next week to walk "
     "through it?\n\nAmara", True, "2026-03-09")
case("request", "Tim Baker <tim.baker@acmecorp.com>", "Handover",
     "Hey Alice - before you go on leave, could you write up the status of the three open deals? Thursday at the "
     "latest.\n\nTim", True, "2026-03-05")
case("request", "Lena Vogel <lena.vogel@vogel-media.at>", "Interview",
     "Hi Alice,\n\nOur podcast would love to interview you. Are you available on March 24 or 25 for a 45-minute "
     "recording?\n\nLena", True, "2026-03-24")
case("request", "Nick Foster <nick@fosterandco.com>", "Survey results",
     "Alice,\n\nCan you share the raw survey results with my analyst? She's at maria@fosterandco.com.\n\nNick",
     True, None)
case("request", "Harper Young <harper.young@globex.com>", "Renewal at risk",
     "Alice, Globex's renewal is at risk. We need an exec sponsor call with their VP before the end of the month. "
     "Can you set it up?\n\nHarper", True, "2026-03-31")
case("request", "Ivan Petrov <ivan@petrov-dev.com>", "Staging credentials",
     "hi alice, could u send me the staging credentials? thx", True, None)
case("request", "Monica Hall <monica.hall@piedpiper.com>", "Quick favour",
     "Alice, quick favour: can you RSVP for both of us to the investor dinner on the 18th? The link expires today."
     "\n\nMonica", True, "2026-03-04")
case("request", "George Martin <george@martinbooks.co.uk>", "Manuscript",
     "Dear Alice,\n\nPlease find attached the final manuscript. I would be grateful if you could return your "
     "comments by 30 April.\n\nWith best wishes,\nGeorge", True, "2026-04-30", sent="2026-04-08T10:00:00Z")
case("request", "Alex Kim <alex.kim@contoso.com>", "Re: Re: Q2 plan",
     "Sounds good. One more thing: can you loop in Daniel from legal before we send it out?\n\nAlex\n\n"
     "On Tue, Mar 3, 2026 at 4:10 PM Alice <alice@example.com> wrote:\n> Here's the Q2 plan.\n>\n> Alice\n",
     True, None)
case("request", "Julia Roberts <julia@robertsfamilyoffice.com>", "Wire instructions",
     "Alice,\n\nBefore we wire the second tranche, please confirm the bank details by phone - we've had fraud "
     "attempts. Ideally today.\n\nJulia", True, "2026-03-04")
case("request", "Ryan Park <ryan.park@initech.com>", "Workshop follow-up",
     "Hi Alice,\n\nThanks for running the workshop. Could you share the slides and the Miro board link with the "
     "group?\n\nRyan", True, None)
case("request", "Sara Ali <sara.ali@contoso.com>", "Customer reference",
     "Hi Alice, Globex is asking for a customer reference in healthcare. Do you think Mercy Health would do a 15-min "
     "call with them? If so can you ask them this week?\n\nSara", True, "2026-03-06")
case("request", "Will Turner <will@turnermarine.com>", "Quote",
     "Alice,\n\nWe need your final quote on the hull repair by 2026-03-10. After that the yard slot goes to "
     "another client.\n\nWill", True, "2026-03-10")
case("request", "Chloe Martin <chloe.martin@contoso.com>", "Offer letter",
     "Hi Alice,\n\nThe candidate accepted verbally! Can you sign the offer letter in DocuSign today so we can send it "
     "tonight?\n\nChloe", True, "2026-03-04")
case("request", "Daniel Cohen <daniel.cohen@cohenlaw.com>", "Deposition prep",
     "Alice,\n\nWe should prepare for the deposition. Are you available Monday at 10 for two hours?\n\nDaniel",
     True, "2026-03-09")
case("request", "Fatima Zahra <fatima@zahra-textiles.ma>", "Fabric samples",
     "Hello Alice,\n\nWe have new fabric samples for the autumn collection. Shall I send them to your office or "
     "to the studio? Please advise.\n\nFatima", True, None)
case("request", "Oscar Lind <oscar.lind@lindab.se>", "Updated NDA",
     "Hi Alice,\n\nOur lawyers made two small edits to the NDA (clauses 4 and 7). Can you have a look and confirm "
     "you're OK with them?\n\nOscar", True, None)
case("request", "Kate Morgan <kate.morgan@fabrikam.com>", "Roadmap review",
     "Alice, I've booked 1h on Friday for the roadmap review but I need your input on priorities first. Could you "
     "rank the attached list by Thursday?\n\nKate", True, "2026-03-05")
case("request", "Noah Williams <noah.w@initech.com>", "Lunch & learn",
     "Hi Alice, would you be up for doing a lunch & learn on negotiation for the sales team in April? Let me know "
     "which dates work.\n\nNoah", True, None)

# ------------------------------------------------------------------------------------ FYIs
case("fyi", "Bob Miller <bob.miller@acmecorp.com>", "Q4 proposal sent",
     "Hi Alice,\n\nFYI - I sent the Q4 proposal to the client this morning. No action needed on your side.\n\nBob",
     False)
case("fyi", "Grace Kim <grace.kim@fabrikam.com>", "Hiring update",
     "Alice,\n\nJust a heads up: both candidates accepted and will start on April 1. I'll handle the onboarding.\n\n"
     "Grace", False)
case("fyi", "Olivia Chen <olivia.chen@contoso.com>", "Budget approved",
     "Hi Alice,\n\nGood news - finance approved the April budget. The POs went out today.\n\nOlivia", False)
case("fyi", "Priya Raman <priya@northwind.io>", "Pilot kicked off",
     "Hello Alice,\n\nThe pilot kicked off yesterday and the first results look promising. I'll send a full report "
     "at the end of the month.\n\nBest,\nPriya", False)
case("fyi", "Sam Lee <sam.lee@initech.com>", "Meeting notes",
     "Hi all,\n\nAttached are the notes from today's meeting. Let me know if you have any questions.\n\nSam", False)
case("fyi", "Henrik Nilsson <henrik@nordlys.se>", "Payment received",
     "Hi Alice,\n\nJust wanted to let you know we received the payment for invoice 2026-031. Thank you!\n\nHenrik",
     False)
case("fyi", "Ben Carter <ben.carter@acmecorp.com>", "Megacorp",
     "Alice - update on Megacorp: their CTO calmed down after the call and they're renewing for two years. "
     "Crisis averted.\n\nBen", False)
case("fyi", "Dana Whitfield <dana@whitfieldcap.com>", "Closing",
     "Alice,\n\nThe round closed on Friday. Wires are in. Thanks again for your help along the way.\n\nDana", False)
case("fyi", "Lucy Grant <lucy@grantdesign.co>", "Banners printed",
     "Banners are printed and will be delivered to the venue on Saturday morning. They look great!\n\nLucy", False)
case("fyi", "Tom Becker <tom@beckerlaw.de>", "Filing done",
     "Alice, the filing went in today, well ahead of the deadline. I'll forward the confirmation once the court "
     "sends it.\n\nTom", False)
case("fyi", "Jenna Ortiz <jenna.ortiz@globex.com>", "Out next week",
     "Hi Alice,\n\nI'll be on vacation next week. Isabel will cover my accounts while I'm away.\n\nJenna", False)
case("fyi", "Raj Patel <raj@patelconsulting.net>", "Article you might like",
     "Alice, saw this piece on usage-based pricing and thought of our conversation last week: "
     "https://example.org/pricing-article\n\nRaj", False)
case("fyi", "Chris Doyle <chris.doyle@umbrella.org>", "Board meeting moved",
     "All,\n\nThe board meeting has been moved from the 12th to the 19th, same time and place. Calendar invites "
     "will be updated.\n\nChris", False)
case("fyi", "Mia Fischer <mia@fischer-events.de>", "Venue confirmed",
     "Hi Alice, the venue is confirmed for 21 May and the deposit has been paid. Contract attached for your "
     "records.\n\nMia", False)
case("fyi", "Liam Walsh <liam.walsh@acmecorp.com>", "Demo env back",
     "Demo environment is back up - the vendor fixed the certificate issue. All good now.\n\nLiam", False)
case("fyi", "Emily Stone <emily@stone-architects.com>", "Permit approved",
     "Hi Alice,\n\nThe building permit was approved this morning. Construction can start as planned on April 6."
     "\n\nBest,\nEmily", False)
case("fyi", "Hannah Wright <hannah.wright@initech.com>", "Questionnaire received",
     "Hi Alice, thanks for sending the security questionnaire so quickly. Our team is reviewing it and we'll get back "
     "to you if anything is unclear.\n\nHannah", False)
case("fyi", "Kevin O'Brien <kevin@obrienbuilders.ie>", "Inspector booked",
     "Alice, inspector is booked for Monday 16 March at 9am. I'll meet him at the site, you don't need to be "
     "there.\n\nKevin", False)
case("fyi", "Noah Williams <noah.w@initech.com>", "Team news",
     "Hi everyone,\n\nPlease welcome Maya Singh, who joins the sales team today as Account Executive for the "
     "Nordics.\n\nNoah", False)
case("fyi", "Paula Jones <paula.jones@umbrella.org>", "Summit agenda",
     "Hello Alice,\n\nThe summit agenda is now public. Your session is on day 2 at 11:00. Looking forward to it!"
     "\n\nPaula", False)
case("fyi", "Ana Lima <ana.lima@brasilfoods.com.br>", "Order dispatched",
     "Hello Alice,\n\nYour order left our warehouse in Santos today. Estimated arrival in Rotterdam is April 2.\n\n"
     "Ana", False)
case("fyi", "Victor Hugo <victor@hugo-partners.fr>", "Forecast looks good",
     "Alice,\n\nI looked at the Q1 forecast you updated. Looks solid, nothing to change from my side.\n\nVictor",
     False)
case("fyi", "Zoe Adams <zoe.adams@contoso.com>", "Holiday calendar",
     "Hi all,\n\nThe 2026 holiday calendar is now in the HR portal for your reference.\n\nZoe\nPeople Team", False)
case("fyi", "Matt Howard <matt@howardlogistics.com>", "Delivery done",
     "Morning Alice, the delivery was completed at 8:20. Signed by Jorge at the dock. Have a good day!\n\nMatt",
     False)
case("fyi", "Frank Weber <frank.weber@weber-it.de>", "Audit finished",
     "Hi Alice,\n\nthe audit finished without findings. Report follows next week.\n\nFrank", False)
case("fyi", "Julia Roberts <julia@robertsfamilyoffice.com>", "Wire sent",
     "Alice, second tranche wired this morning after we confirmed the details by phone. Should land tomorrow."
     "\n\nJulia", False)
case("fyi", "Ryan Park <ryan.park@initech.com>", "Thanks for the workshop",
     "Hi Alice,\n\nThe team really enjoyed the workshop yesterday. Several people said it was the best session of "
     "the quarter.\n\nRyan", False)
case("fyi", "Ethan Brooks <ethan@brooksvc.com>", "Our new fund",
     "Alice, sharing some news: we just closed Fund III at $120M. Our focus stays on B2B SaaS in Europe.\n\nEthan",
     False)
case("fyi", "Kate Morgan <kate.morgan@fabrikam.com>", "Roadmap published",
     "The roadmap is published on Confluence. Thanks everyone for the input!\n\nKate", False)
case("fyi", "Isabel Cruz <isabel.cruz@globex.com>", "Quote sent",
     "Hi Alice - the 3-year renewal quote went out to the customer. I'll keep you posted on their reaction.\n\n"
     "Isabel", False)

# ------------------------------------------------------------------------------------ newsletters
NL = {"List-Unsubscribe": "<https://news.example.net/u/123>", "List-Id": "<weekly.news.example.net>"}
case("newsletter", "SaaS Weekly <newsletter@saasweekly.com>", "This week: pricing experiments that worked",
     "Hi Alice,\n\nThis week we look at five pricing experiments. Could your company benefit from usage-based "
     "pricing? Read on!\n\nUnsubscribe | Manage preferences", False, headers=NL)
case("newsletter", "Figma <news@figma.com>", "Config 2026: register now",
     "Join us at Config 2026. Register by March 20 to get the early-bird price!\n\nYou are receiving this email "
     "because you signed up for Figma updates. Unsubscribe.", False,
     headers={"List-Unsubscribe": "<mailto:unsub@figma.com>", "Precedence": "bulk"})
case("newsletter", "The Hustle <hello@thehustle.co>", "Why everyone is buying vending machines",
     "Happy Wednesday! Today: vending machines, AI chips and a weird new tax trick. Can you guess which state has "
     "the most vending machines per capita?\n\nUnsubscribe here.", False, headers=NL)
case("newsletter", "Acme Marketing <marketing@acme-tools.com>", "Your spring toolkit",
     "Spring is here! Check out our new spring toolkit and save 20% until Sunday.\n\nView in browser\n"
     "Unsubscribe from these emails", False, headers={"Precedence": "bulk"})
case("newsletter", "Stratechery <email@stratechery.com>", "The AI Platform Shift",
     "Good morning,\n\nToday's update looks at platform shifts and what they mean for incumbents.\n\n"
     "You received this email because you are subscribed to Stratechery.", False, headers=NL)
case("newsletter", "Local Chamber of Commerce <events@cityhamber.org>", "March networking breakfast",
     "Dear member,\n\nPlease join us for our March networking breakfast on March 19 at 7:30am. RSVP by March 16."
     "\n\nTo unsubscribe from chamber mailings click here.", False,
     headers={"List-Id": "<members.cityhamber.org>"})
case("newsletter", "Product Hunt Daily <hello@digest.producthunt.com>", "Top products today",
     "Here are today's top 5 products. Don't forget to vote for your favourites!\n\nUnsubscribe", False,
     headers=NL)
case("newsletter", "Dr. Lisa Wong <lisa@wongdental.com>", "Spring newsletter from Wong Dental",
     "Dear patients,\n\nSpring is a great time for a check-up. Please call our office to schedule your next cleaning."
     "\n\nIf you no longer wish to receive our newsletter, reply STOP or unsubscribe here.", False)
case("newsletter", "Google Developers <googledev-noreply@google.com>", "What's new in Android 17",
     "Explore the new APIs in Android 17 and update your apps before the Play deadline on August 31.\n\n"
     "You have received this mandatory service announcement to update you about important changes.", False,
     headers={"List-Unsubscribe": "<https://google.com/u>"})
case("newsletter", "Team Offsite Committee <offsite-list@contoso.com>", "Offsite t-shirt sizes",
     "Hi all, please reply with your t-shirt size by Friday so we can order the offsite shirts!", False,
     headers={"List-Id": "<all-staff.contoso.com>", "Precedence": "list"})
case("newsletter", "Substack <noreply@substack.com>", "New post from Lenny's Newsletter",
     "How to run a great planning process. Could you be doing planning better? Here's what the best teams do."
     "\n\nUnsubscribe", False, headers=NL)
case("newsletter", "Harvard Business Review <hbr@email.hbr.org>", "Management Tip of the Day",
     "Give feedback early and often. Schedule short weekly check-ins with each direct report.\n\nUnsubscribe | "
     "Privacy Policy", False, headers=NL)
case("newsletter", "WeWork <community@wework.com>", "Events at your building this week",
     "Join us Thursday for bagels in the lounge and Friday for happy hour on the roof. See you there!\n\n"
     "Manage your email preferences", False, headers={"List-Unsubscribe": "<https://wework.com/u>"})
case("newsletter", "Conference Team <info@devsummit.io>", "Call for speakers closes soon",
     "Submit your talk by March 15! We're looking for speakers on platform engineering, AI and security.\n\n"
     "Unsubscribe", False)
case("newsletter", "Nordic SaaS Meetup <meetup@nordicsaas.org>", "Next meetup: April 9",
     "Hey Alice! Our next meetup is on April 9 in Stockholm. Can you make it? Sign up on the event page.\n\n"
     "You are receiving this because you joined Nordic SaaS Meetup.", False,
     headers={"List-Unsubscribe": "<https://nordicsaas.org/unsub>"})

# ------------------------------------------------------------------------------------ receipts, notifications
case("receipt", "Amazon.com <auto-confirm@amazon.com>", "Your Amazon.com order #113-4412-9981 has shipped",
     "Hello Alice, your package is on its way. Track your package: ...\n\nArriving Friday, March 6.", False)
case("receipt", "Uber Receipts <uber.us@uber.com>", "Your Wednesday morning trip with Uber",
     "Thanks for riding, Alice. Total: $23.41. Rate your driver.", False)
case("receipt", "Stripe <receipts@stripe.com>", "Your receipt from Notion Labs #2231-8890",
     "Receipt from Notion Labs. Amount paid $96.00. Date paid March 4, 2026. Questions? Contact Notion Labs.", False)
case("receipt", "GitHub <noreply@github.com>", "[acme/api] Pull request review requested (#482)",
     "@bobmiller requested your review on: acme/api#482 Add rate limiting.\n\nReply to this email directly or view "
     "it on GitHub.", False)
case("receipt", "Jira <jira@acmecorp.atlassian.net>", "[JIRA] (OPS-1182) Rotate TLS certificates",
     "Ben Carter assigned OPS-1182 to you. Due date: 10/Mar/26. Please review the ticket.", False)
case("receipt", "Google <no-reply@accounts.google.com>", "Security alert",
     "A new sign-in on Windows. If this was you, you don't need to do anything. If not, please secure your account.",
     False)
case("receipt", "Delta Air Lines <DeltaAirLines@t.delta.com>", "Your trip confirmation - ATL to LHR",
     "Confirmation number: H7K2LM. Check in 24 hours before departure. Flight DL30 departs Monday, March 16.", False)
case("receipt", "DocuSign <dse@docusign.net>", "Completed: Mutual NDA - Northwind",
     "All parties have completed Mutual NDA - Northwind. Please find the completed document attached.", False)
case("receipt", "Slack <notification@slack.com>", "New messages from Ben Carter",
     "Ben Carter: can you look at the Megacorp thread when you have a sec?\n\nYou have 3 unread messages in "
     "Acme Workspace.", False)
case("receipt", "PayPal <service@paypal.com>", "You sent a payment",
     "You sent $250.00 USD to Grant Design. Transaction ID 8XK1123. Thank you for your payment.", False)
case("receipt", "Zoom <no-reply@zoom.us>", "Cloud Recording - Weekly sync is now available",
     "Hi Alice, your cloud recording is now available. Share recording link with viewers.", False)
case("receipt", "Expensify <concierge@expensify.com>", "Report approved",
     "Your expense report 'February 2026' was approved by Steve Rogers and will be reimbursed in 3-5 business days.",
     False)
case("receipt", "Chase <no.reply.alerts@chase.com>", "Your statement is ready",
     "Your February statement is available. Please log in to view it. Minimum payment due March 25.", False)
case("receipt", "Booking.com <noreply@booking.com>", "Booking confirmation - Hotel Lisboa Plaza",
     "Your booking is confirmed. Check-in: Monday 23 March 2026. Free cancellation until March 20.", False)
case("receipt", "Calendly <notifications@calendly.com>", "New Event: Raj Patel - 30 Minute Meeting",
     "A new event has been scheduled. Invitee: Raj Patel. Event date: Thursday, March 5, 2026 10:00am.", False)

# ------------------------------------------------------------------------------------ calendar invitations
case("calendar", "Chris Doyle <chris.doyle@umbrella.org>", "Invitation: Board prep @ Tue Mar 10, 2026 2pm - 3pm",
     "Chris Doyle has invited you to Board prep.\n\nJoin with Google Meet\n\nGoing? Yes - Maybe - No", False,
     calendar=True)
case("calendar", "Sam Lee <sam.lee@initech.com>", "Invitation: Initech kickoff @ Mon Mar 9, 2026 10am",
     "Sam Lee has invited you to an event.\n\nAgenda: intros, scope, timeline. Please come prepared with questions.",
     False, calendar=True)
case("calendar", "Kate Morgan <kate.morgan@fabrikam.com>", "Updated invitation: Roadmap review",
     "This event has been changed. When: Friday Mar 6, 2026 1pm - 2pm (CET).", False, calendar=True)
case("calendar", "Raj Patel <raj@patelconsulting.net>", "Accepted: Renewal call @ Thu Mar 5",
     "Raj Patel has accepted this invitation.", False, calendar=True)
case("calendar", "Microsoft Outlook <daniel.cohen@cohenlaw.com>", "Deposition prep",
     "Daniel Cohen has invited you to a meeting.\n\nWhen: Monday, March 9, 2026 10:00 AM-12:00 PM.\n"
     "Where: Conference room B\n\nAccept Tentative Decline", False, calendar=True)
case("calendar", "Zoe Adams <zoe.adams@contoso.com>", "Invitation: All hands Q1",
     "Zoe Adams has invited you to All hands Q1. Thursday Mar 26, 2026 4pm.", False, calendar=True)
case("calendar", "Google Calendar <calendar-notification@google.com>", "Reminder: 1:1 with Grace @ 3pm",
     "This is a reminder for the following event. 1:1 with Grace, Wednesday March 4, 3pm.", False)
case("calendar", "Mia Fischer <mia@fischer-events.de>", "Canceled event: Venue walkthrough",
     "This event has been canceled and removed from your calendar.", False, calendar=True)

# ------------------------------------------------------------------------------------ out of office
OOO = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}
case("ooo", "Priya Raman <priya@northwind.io>", "Automatic reply: Pilot timeline",
     "Thank you for your email. I am out of the office until March 16 with limited access to email. For urgent "
     "matters please contact partnerships@northwind.io.", False, headers=OOO)
case("ooo", "Tom Becker <tom@beckerlaw.de>", "Abwesenheitsnotiz: Engagement letter",
     "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 13.03. nicht im Büro. In dringenden Fällen wenden "
     "Sie sich bitte an mein Sekretariat.", False, headers={"Auto-Submitted": "auto-replied"})
case("ooo", "Jenna Ortiz <jenna.ortiz@globex.com>", "Out of Office: Pricing sheet",
     "Hi, I'm out of the office on vacation until Monday, March 16. Please contact Isabel Cruz for anything urgent.",
     False)
case("ooo", "Marco Bianchi <marco@fabbrica.it>", "Re: Shipment dates",
     "I am currently out of the office and will return on 9 March. Please call +39 02 1234 567 if it cannot wait.",
     False, headers={"X-Auto-Response-Suppress": "All", "Auto-Submitted": "auto-generated"})
case("ooo", "Marie Dupont <marie.dupont@dupont.fr>", "Réponse automatique : Contrat",
     "Bonjour, je suis absente jusqu'au 10 mars. Pour toute urgence, merci de contacter Paul.", False,
     headers=OOO)
case("ooo", "Lucía Gómez <lucia@gomez.es>", "Respuesta automática: Propuesta",
     "Gracias por su mensaje. Estoy fuera de la oficina hasta el 12 de marzo.", False)
case("ooo", "Henrik Nilsson <henrik@nordlys.se>", "Auto: Invoice question",
     "I will be out of the office from March 4 to March 8. Please send finance questions to ap@nordlys.se.", False)
case("ooo", "Support Desk <support@vendor.io>", "We received your request [#55123]",
     "Thanks for contacting us! This is an automated response confirming we received your request. A member of "
     "our team will reply within 24 hours.", False, headers={"Auto-Submitted": "auto-replied"})

# ------------------------------------------------------------------------------------ request only in quoted text
case("quoted", "Bob Miller <bob.miller@acmecorp.com>", "Re: Q4 proposal",
     "Thanks, got it!\n\nOn Wed, Mar 4, 2026 at 9:14 AM Alice <alice@example.com> wrote:\n> Bob, could you send me "
     "the final numbers by Friday?\n> Alice\n", False)
case("quoted", "Grace Kim <grace.kim@fabrikam.com>", "Re: Headcount plan",
     "Done - the offers went out this morning.\n\nGrace\n\nOn Tue, Mar 3, 2026, Alice <alice@example.com> wrote:\n"
     "> Please send both offers before Thursday.\n", False)
case("quoted", "Sam Lee <sam.lee@initech.com>", "Re: Kickoff",
     "Great, see you then.\n\nSam\n\n-----Original Message-----\nFrom: Alice <alice@example.com>\nSent: Tuesday, "
     "March 3, 2026 5:02 PM\nTo: Sam Lee\nSubject: Kickoff\n\nCan you confirm Monday 10am works for your team?\n",
     False)
case("quoted", "Olivia Chen <olivia.chen@contoso.com>", "Re: Budget approval",
     "Thank you Alice!\n\nOn Mar 4, 2026, at 10:22, Alice <alice@example.com> wrote:\n\n> Approved. Could you make "
     "sure purchasing has it by EOD?\n>\n> On Mar 3, 2026, at 16:01, Olivia wrote:\n>> Please approve the budget.\n",
     False)
case("quoted", "Laura Schmidt <laura.schmidt@siemens-partner.de>", "AW: Data export",
     "Danke, ist angekommen.\n\nLaura\n\nAm 04.03.2026 um 11:30 schrieb Alice <alice@example.com>:\n> Hi Laura, "
     "please review the export and tell me if anything's missing.\n", False)
case("quoted", "Diego Martinez <diego@martinez-imports.mx>", "Re: PO 8812",
     "Perfect, thanks.\n\nOn Wed, 4 Mar 2026 at 15:40, Alice <alice@example.com> wrote:\n> Here is the revised PO. "
     "Can you confirm the factory received it?\n", False)
case("quoted", "Rachel Green <rachel.green@fabrikam.com>", "Re: Offsite agenda",
     "Noted, I'll add it.\n\n> On Wed, Mar 4, 2026 at 12:00 PM Alice <alice@example.com> wrote:\n> Could you add a "
     "session on pricing? And please book the big room.\n", False)
case("quoted", "Yuki Tanaka <yuki.tanaka@sakura-trading.jp>", "Re: Contract draft",
     "Dear Alice,\n\nWell received, thank you very much.\n\nBest regards,\nYuki\n\nOn Thu, Mar 5, 2026 at 9:00 AM "
     "Alice <alice@example.com> wrote:\n> Dear Yuki, please review the attached draft by Monday.\n", False)
case("quoted", "Ella Svensson <ella@svensson.se>", "Fwd: Reference letter",
     "\n---------- Forwarded message ---------\nFrom: INSEAD Admissions <admissions@insead.edu>\nDate: Tue, Mar 3, "
     "2026\nSubject: Reference letter\nTo: Ella Svensson\n\nPlease ask your recommender to submit the letter "
     "by March 31.\n", False)
case("quoted", "Nick Foster <nick@fosterandco.com>", "Re: Survey results",
     "Got them, thanks Alice!\n\nOn Wed, Mar 4, 2026 at 2:15 PM Alice wrote:\n> Nick, can you confirm Maria "
     "received the files?\n", False)

# ------------------------------------------------------------------------------------ cc only
case("cc", "Bob Miller <bob.miller@acmecorp.com>", "Q4 proposal",
     "Hi Ben,\n\nCould you review the Q4 proposal by Friday?\n\nThanks,\nBob", False,
     to="ben.carter@acmecorp.com", cc=ALICE)
case("cc", "Olivia Chen <olivia.chen@contoso.com>", "PO release",
     "Purchasing team, please release the April POs today. Alice approved the budget.\n\nOlivia", False,
     to="purchasing@contoso.com", cc=ALICE)
case("cc", "Hannah Wright <hannah.wright@initech.com>", "Questionnaire",
     "Mark, can you get the questionnaire back to us by next Friday?\n\nHannah", False,
     to="mark@example.com", cc=f"{ALICE}, legal@initech.com")
case("cc", "Tom Becker <tom@beckerlaw.de>", "Engagement letter",
     "Dear Mr. Schulz,\n\nplease sign the enclosed engagement letter and send it back by March 20.\n\nTom Becker",
     False, to="schulz@example.de", cc=ALICE)
case("cc", "Kate Morgan <kate.morgan@fabrikam.com>", "Roadmap",
     "Rachel, please rank the list by Thursday. Alice for visibility.\n\nKate", False,
     to="rachel.green@fabrikam.com", cc=ALICE)
case("cc", "Chris Doyle <chris.doyle@umbrella.org>", "Board deck",
     "Team - can someone pull the Q4 numbers into the deck before Wednesday?\n\nChris", False,
     to="finance@umbrella.org", cc=ALICE)
case("cc", "Raj Patel <raj@patelconsulting.net>", "Renewal",
     "Sara, can we schedule the renewal call for next week? Looping in Alice.\n\nRaj", False,
     to="sara.ali@contoso.com", cc=ALICE)
case("cc", "Zoe Adams <zoe.adams@contoso.com>", "Reviews due",
     "Managers, please submit all self-assessments by April 17.\n\nZoe", False,
     to="managers@contoso.com", cc=ALICE, sent="2026-04-06T08:00:00Z")

# ------------------------------------------------------------------------------------ outbound
case("outbound", "Alice Moreau <alice@example.com>", "Q4 proposal",
     "Bob, could you send me the final numbers by Friday?\n\nAlice", False, to="bob.miller@acmecorp.com")
case("outbound", "Alice Moreau <alice@example.com>", "Re: NDA",
     "Hi Priya, please find the signed NDA attached. Can we start the pilot Monday?\n\nAlice",
     False, to="priya@northwind.io")
case("outbound", "Alice Moreau <alice@example.com>", "Kickoff",
     "Sam, can you confirm Monday 10am works for your team?", False, to="sam.lee@initech.com")
case("outbound", "Alice Moreau <alice@example.com>", "Budget",
     "Olivia - approved. Please make sure purchasing has it by EOD.", False, to="olivia.chen@contoso.com")
case("outbound", "Alice Moreau <alice@example.com>", "Intro: Ethan <> Mark",
     "Mark, meet Ethan from Brooks VC. Ethan, meet Mark, our CFO. I'll let you two take it from here!", False,
     to="ethan@brooksvc.com", cc="mark@example.com")
case("outbound", "Alice Moreau <alice@example.com>", "Reference",
     "Dear admissions committee, please find my reference for Ella Svensson attached.", False,
     to="admissions@insead.edu")
case("outbound", "Alice Moreau <alice@example.com>", "Re: Site visit",
     "Monday 16 March works. Please book the inspector.\n\nAlice", False, to="kevin@obrienbuilders.ie")
case("outbound", "Alice Moreau <alice@example.com>", "Offsite",
     "Rachel, could you add a session on pricing? And please book the big room.", False,
     to="rachel.green@fabrikam.com")

# ------------------------------------------------------------------------------------ closing replies
case("closing", "Jenna Ortiz <jenna.ortiz@globex.com>", "Re: Pricing sheet", "Thanks, got it!\n\nJ", False)
case("closing", "Marco Bianchi <marco@fabbrica.it>", "Re: Shipment dates", "Perfect, thank you Alice.\n\nMarco",
     False)
case("closing", "Sofia Rossi <sofia.rossi@contoso.com>", "Re: Travel approval", "Great, thanks so much!", False)
case("closing", "Ivan Petrov <ivan@petrov-dev.com>", "Re: Staging credentials", "works, thx", False)
case("closing", "Lena Vogel <lena.vogel@vogel-media.at>", "Re: Interview",
     "Wonderful, looking forward to it! Thanks again.\n\nLena", False)
case("closing", "Frank Weber <frank.weber@weber-it.de>", "Re: Access rights", "Danke, klappt!\n\nFrank", False)
case("closing", "Steve Rogers <steve.rogers@shieldtech.com>", "Re: Expense report",
     "Received, all good now. Thanks Alice.", False)
case("closing", "Oscar Lind <oscar.lind@lindab.se>", "Re: Updated NDA", "Noted. Thank you!\n\nOscar", False)
case("closing", "Will Turner <will@turnermarine.com>", "Re: Quote", "Got it - thanks, we'll be in touch.", False)
case("closing", "Amara Okafor <amara@okafor-ventures.ng>", "Re: Pitch deck feedback",
     "Sounds good, see you Monday!\n\nAmara", False)

# ------------------------------------------------------------------------------------ non-English
case("non_english", "Hans Weber <hans.weber@weber-gmbh.de>", "Angebot",
     "Hallo Frau Moreau,\n\nkönnten Sie mir bitte das Angebot bis Freitag schicken?\n\nVielen Dank und viele Grüße\n"
     "Hans Weber", True, "2026-03-06", tz="Europe/Berlin")
case("non_english", "Marie Dupont <marie.dupont@dupont.fr>", "Contrat",
     "Bonjour Alice,\n\nPourriez-vous m'envoyer le contrat signé avant vendredi ?\n\nCordialement,\nMarie",
     True, "2026-03-06", tz="Europe/Paris")
case("non_english", "Lucía Gómez <lucia@gomez.es>", "Propuesta",
     "Hola Alice,\n\n¿Puedes revisar la propuesta antes del viernes? El cliente la necesita el lunes.\n\n"
     "Saludos,\nLucía", True, "2026-03-06", tz="Europe/Madrid")
case("non_english", "Jürgen Klein <juergen.klein@klein-ag.de>", "Rechnung 2026-114",
     "Sehr geehrte Frau Moreau,\n\nbitte bestätigen Sie uns den Eingang der Rechnung bis morgen.\n\n"
     "Mit freundlichen Grüßen\nJürgen Klein", True, "2026-03-05", tz="Europe/Berlin")
case("non_english", "Pierre Martin <pierre.martin@martin-conseil.fr>", "Réunion",
     "Bonjour,\n\nPouvez-vous organiser une réunion avec l'équipe la semaine prochaine ?\n\nMerci,\nPierre",
     True, "2026-03-09", tz="Europe/Paris")
case("non_english", "Carmen Ruiz <carmen@ruiz-abogados.es>", "Firma del contrato",
     "Estimada Alice,\n\nPor favor, firme el contrato y envíelo antes del 20 de marzo.\n\nAtentamente,\nCarmen Ruiz",
     True, "2026-03-20", tz="Europe/Madrid")
case("non_english", "Klaus Bauer <klaus.bauer@bauer-logistik.de>", "Lieferung",
     "Hallo Alice,\n\nkannst du mir die Lieferadresse für nächste Woche schicken?\n\nGruß\nKlaus", True,
     "2026-03-09", tz="Europe/Berlin")
case("non_english", "Sophie Laurent <sophie@laurent-design.fr>", "Maquettes",
     "Salut Alice,\n\nPeux-tu valider les maquettes d'ici demain ? Merci !\n\nSophie", True, "2026-03-05",
     tz="Europe/Paris")
case("non_english", "Javier Torres <javier.torres@torres.mx>", "Llamada",
     "Hola Alice, ¿podrías llamarme mañana para hablar del pedido?\n\nJavier", True, "2026-03-05",
     tz="America/Mexico_City")
case("non_english", "Anna Schulz <anna.schulz@schulz-partner.de>", "Unterlagen",
     "Liebe Alice,\n\nanbei die Unterlagen zur Info. Es gibt nichts zu tun, nur zur Kenntnis.\n\nViele Grüße\nAnna",
     False, tz="Europe/Berlin")
case("non_english", "Luc Bernard <luc.bernard@bernard.fr>", "Compte rendu",
     "Bonjour Alice,\n\nVoici le compte rendu de la réunion d'hier pour information.\n\nBonne journée,\nLuc",
     False, tz="Europe/Paris")
case("non_english", "Elena Vidal <elena@vidal.es>", "Pedido enviado",
     "Hola Alice,\n\nTe confirmo que el pedido salió ayer. Llegará el martes.\n\nUn saludo,\nElena", False,
     tz="Europe/Madrid")
case("non_english", "Moritz Lang <moritz.lang@lang-it.de>", "Zugang",
     "Hi Alice,\n\nwärst du so nett und richtest mir bis Ende der Woche einen Zugang zum CRM ein?\n\nDanke!\nMoritz",
     True, "2026-03-06", tz="Europe/Berlin")
case("non_english", "Giulia Ferrari <giulia@ferrari-studio.it>", "Preventivo",
     "Ciao Alice,\n\npotresti mandarmi il preventivo entro venerdì? Grazie mille!\n\nGiulia", True, "2026-03-06",
     tz="Europe/Rome")

# ------------------------------------------------------------------------------------ ambiguous phrasing
case("ambiguous", "Bob Miller <bob.miller@acmecorp.com>", "Proposal draft",
     "Alice, it would be great to get your thoughts on the draft at some point.\n\nBob", True, None)
case("ambiguous", "Grace Kim <grace.kim@fabrikam.com>", "Budget",
     "We might need to revisit the budget later this year, depending on how Q2 goes.\n\nGrace", False)
case("ambiguous", "Ben Carter <ben.carter@acmecorp.com>", "Megacorp",
     "Any chance you could look at the Megacorp contract before Thursday's call?\n\nBen", True, "2026-03-05")
case("ambiguous", "Raj Patel <raj@patelconsulting.net>", "Article",
     "Not sure if you've seen this yet - interesting take on pricing.\n\nRaj", False)
case("ambiguous", "Dana Whitfield <dana@whitfieldcap.com>", "Founders",
     "The founders are keen to hear from you. Whenever suits.\n\nDana", True, None)
case("ambiguous", "Lucy Grant <lucy@grantdesign.co>", "Weekend",
     "How was your weekend? Ours was way too short.\n\nLucy", False)
case("ambiguous", "Sam Lee <sam.lee@initech.com>", "Thoughts",
     "I wonder whether we should move the launch to Q3. Something to think about.\n\nSam", False)
case("ambiguous", "Olivia Chen <olivia.chen@contoso.com>", "Slides",
     "I still haven't seen the slides for tomorrow's meeting.\n\nOlivia", True, "2026-03-05")
case("ambiguous", "Hannah Wright <hannah.wright@initech.com>", "Contract",
     "Our legal team is waiting on your redlines before they can move forward.\n\nHannah", True, None)
case("ambiguous", "Ethan Brooks <ethan@brooksvc.com>", "Catching up",
     "We should grab coffee sometime!\n\nEthan", False)
case("ambiguous", "Chris Doyle <chris.doyle@umbrella.org>", "Numbers",
     "Do you know if the Q4 numbers are final?\n\nChris", True, None)
case("ambiguous", "Mia Fischer <mia@fischer-events.de>", "Caterer",
     "The caterer asked about dietary requirements again. I told them we'd get back to them by Monday.\n\nMia",
     True, "2026-03-09")
case("ambiguous", "Jack Turner <jack@turnerpr.com>", "Coverage",
     "Did you see the coverage in TechDaily? Pretty good, right?\n\nJack", False)
case("ambiguous", "Peter Novak <peter.novak@stellarbank.com>", "Account opening",
     "Dear Ms. Moreau,\n\nWe are still missing one document to complete your application.\n\nPeter Novak", True, None)
case("ambiguous", "Harper Young <harper.young@globex.com>", "Globex",
     "Globex's VP mentioned she'd like to meet you at some point.\n\nHarper", True, None)
case("ambiguous", "Nora Haddad <nora@haddad.legal>", "Update",
     "Just checking in on the status of the signature.\n\nNora", True, None)
case("ambiguous", "Victor Hugo <victor@hugo-partners.fr>", "Idea",
     "Would be interesting to see how the EMEA numbers compare to last year, no rush.\n\nVictor", False)

# ------------------------------------------------------------------------------------ SMS
sms("sms", "+14155550123", "Hey can you call me when you get a chance? Need to talk about the Globex deal", True)
sms("sms", "+14155550144", "Running 10 min late, sorry!", False)
sms("sms", "+14155550167", "Can you send me the address for tomorrow's dinner?", True, "2026-03-05")
sms("sms", "+14155550189", "Thanks for today! Great meeting", False)
sms("sms", "+14155550111", "Please confirm you can make the 9am with the bank on Friday", True, "2026-03-06")
sms("sms", "+14155550123", "ok sounds good", False)
sms("sms", "+14155550132", "Don't forget to sign the lease renewal before the 15th!", True, "2026-03-15")
sms("sms", "+14155550144", "Landed. Heading to the hotel", False)
sms("sms", "28294", "Your verification code is 482913. Do not share it with anyone.", False)
sms("sms", "72166", "CVS Pharmacy: your prescription is ready for pickup. Reply STOP to opt out.", False)
sms("sms", "+14155550167", "Are you free for lunch Thursday?", True, "2026-03-05")
sms("sms", "+14155550198", "can u review the deck tonight? client meeting is at 8 tmrw", True, "2026-03-04")
sms("sms", "+14155550111", "Got it, thanks", False)
sms("sms", "+14155550155", "Happy birthday!! 🎉", False)
sms("sms", "+14155550177", "Need you to approve the PO in Coupa asap, vendor is waiting", True, None)
sms("sms", "+14155550100", "Can you pick up milk on the way home?", False, to="+14155550188")
sms("sms", "+14155550132", "Meeting moved to 3pm fyi", False)
sms("sms", "+14155550199", "Hi Alice, this is Dr. Lee's office confirming your appointment Monday at 10am. "
    "Reply C to confirm.", True, "2026-03-09")
sms("sms", "+14155550123", "Could we push our call to next week? Swamped", True, "2026-03-09")
sms("sms", "+14155550166", "Saw your post on LinkedIn, congrats on the launch!", False)


def _raw(fields: dict) -> str:
    message = EmailMessage()
    message["From"] = fields["frm"]
    message["To"] = fields["to"]
    if fields["cc"]:
        message["Cc"] = fields["cc"]
    message["Subject"] = fields["subject"]
    sent = dt.datetime.fromisoformat(fields["sent"].replace("Z", "+00:00"))
    message["Date"] = format_datetime(sent)
    message["Message-ID"] = f"<{hashlib.sha1((fields['subject'] + fields['body']).encode()).hexdigest()[:16]}@eval.example>"
    for name, value in fields["headers"].items():
        message[name] = value
    message.set_content(fields["body"])
    if fields["calendar"]:
        message.add_attachment("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:"
                               f"{fields['subject']}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                               subtype="calendar", filename="invite.ics")
    return message.as_string()


def build() -> tuple[list[dict], list[dict]]:
    tune: list[dict] = []
    holdout: list[dict] = []
    seen: dict[str, int] = {}
    for category, fields in CASES:
        index = seen.get(category, 0)
        seen[category] = index + 1
        row = {"id": f"{category}-{index + 1:03d}", "category": category, "owner": fields["owner"],
               "timezone": fields["tz"]}
        if "sms" in fields:
            row["sms"] = fields["sms"]
        else:
            row["raw"] = _raw(fields)
        row["action"] = fields["action"]
        row["due"] = fields["due"] if fields["action"] else None
        (holdout if index % 3 == 2 else tune).append(row)
    return tune, holdout


def main() -> None:
    tune, holdout = build()
    for name, rows in (("eval_tune.jsonl", tune), ("eval_holdout.jsonl", holdout)):
        with open(HERE / name, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(tune)} tuning cases, {len(holdout)} holdout cases")


if __name__ == "__main__":
    main()
