"""Bulk resolution of participant addresses to contacts and companies.

The order of precedence is: an exact identifier match; else an e-mail domain maps to a
company (free-mail domains never do); else, unless configured off, a new contact is made.
Every step is a handful of set-based queries, whatever the number of addresses.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import transaction

from contacts.lookups import chunked
from contacts.models import Company, Contact, ContactIdentifier
from contacts.normalize import email_domain, is_valid_email, is_valid_phone

# Consumer mailbox providers: a shared domain says nothing about a person's employer.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com outlook.com hotmail.com hotmail.co.uk live.com msn.com
    yahoo.com yahoo.co.uk yahoo.fr ymail.com rocketmail.com icloud.com me.com mac.com
    aol.com aim.com proton.me protonmail.com pm.me gmx.com gmx.de gmx.net web.de mail.com
    zoho.com yandex.com yandex.ru mail.ru fastmail.com hey.com tutanota.com qq.com 163.com
    126.com comcast.net verizon.net att.net sbcglobal.net orange.fr free.fr btinternet.com
    """.split()
)



@dataclass(frozen=True)
class AddressToResolve:
    kind: str  # ContactIdentifier.Kind value
    value: str  # normalised
    display_name: str = ""
    # False: match an existing contact only; never create one (or a company) for it.
    may_create: bool = True


def merged(known: AddressToResolve | None, seen: AddressToResolve) -> AddressToResolve:
    """One address met again: it may create if any occurrence may, and keeps the first display name."""
    if known is None:
        return seen
    if (known.may_create or not seen.may_create) and (known.display_name or not seen.display_name):
        return known
    return replace(known, may_create=known.may_create or seen.may_create,
                   display_name=known.display_name or seen.display_name)


def is_resolvable(kind: str, value: str) -> bool:
    """Only well-formed, in-limit addresses become identifiers; anything else stays raw text."""
    if kind == ContactIdentifier.Kind.EMAIL:
        return is_valid_email(value)
    if kind == ContactIdentifier.Kind.PHONE:
        return is_valid_phone(value)
    return False


@dataclass(frozen=True)
class Resolution:
    contact_id: int | None
    company_id: int | None


def is_free_mail(domain: str) -> bool:
    domain = domain.lower()
    return domain in FREE_MAIL_DOMAINS or domain in settings.CRM_EXTRA_FREE_MAIL_DOMAINS


def company_name_from_domain(domain: str) -> str:
    """A readable default name: "acme-widgets.co.uk" -> "Acme Widgets"."""
    labels = domain.split(".")
    if len(labels) >= 3 and len(labels[-2]) <= 3 and len(labels[-1]) == 2:
        core = labels[-3]  # second-level public suffix such as co.uk or com.au
    else:
        core = labels[-2] if len(labels) >= 2 else labels[0]
    return core.replace("-", " ").replace("_", " ").title()


def _identifier_matches(values: Sequence[str]) -> dict[str, tuple[int, int | None]]:
    found: dict[str, tuple[int, int | None]] = {}
    for chunk in chunked(values):
        for value, contact_id, company_id in ContactIdentifier.objects.filter(value__any=chunk).values_list(
            "value", "contact_id", "contact__company_id"
        ):
            found[value] = (contact_id, company_id)
    return found


def companies_for_domains(domains: Iterable[str], create: bool) -> dict[str, int]:
    """Maps non-free-mail domains to company ids, creating missing companies when asked."""
    wanted = sorted({d for d in domains if d and not is_free_mail(d)})
    found: dict[str, int] = {}
    for chunk in chunked(wanted):
        found.update(Company.objects.filter(domain__any=chunk).values_list("domain", "id"))
    missing = [d for d in wanted if d not in found]
    if missing and create:
        # ignore_conflicts: another worker may create the same company at the same moment.
        Company.objects.bulk_create(
            [Company(domain=d, name=company_name_from_domain(d)[:200]) for d in missing], ignore_conflicts=True
        )
        for chunk in chunked(missing):
            found.update(Company.objects.filter(domain__any=chunk).values_list("domain", "id"))
    return found


def resolve_addresses(
    addresses: Iterable[AddressToResolve],
    *,
    create_contacts: bool | None = None,
    create_companies: bool | None = None,
) -> dict[str, Resolution]:
    """Resolves every address to a (contact, company) pair, keyed by normalised value.

    Must run inside a transaction (the caller's batch transaction): contacts made here
    are rolled back with the batch. Safe against a concurrent worker resolving the
    same new address: the identifier's unique constraint picks one contact. Addresses
    that are not well-formed identifiers (see is_resolvable) are left out; those with
    ``may_create=False`` are only matched.
    """
    if create_contacts is None:
        create_contacts = settings.CRM_CREATE_CONTACTS
    if create_companies is None:
        create_companies = settings.CRM_CREATE_COMPANIES
    by_value: dict[str, AddressToResolve] = {}
    for address in addresses:
        if not is_resolvable(address.kind, address.value):
            continue
        by_value[address.value] = merged(by_value.get(address.value), address)
    if not by_value:
        return {}

    matched = _identifier_matches(list(by_value))
    result = {value: Resolution(contact_id, company_id) for value, (contact_id, company_id) in matched.items()}
    unknown = [a for v, a in by_value.items() if v not in matched]
    if not unknown:
        return result

    creatable_domains = {email_domain(a.value) for a in unknown if a.kind == ContactIdentifier.Kind.EMAIL
                         and a.may_create}
    companies = companies_for_domains(creatable_domains, create_companies)
    match_only_domains = {email_domain(a.value) for a in unknown
                          if a.kind == ContactIdentifier.Kind.EMAIL} - creatable_domains
    if match_only_domains:
        companies.update(companies_for_domains(match_only_domains, create=False))

    def company_of(address: AddressToResolve) -> int | None:
        if address.kind != ContactIdentifier.Kind.EMAIL:
            return None
        return companies.get(email_domain(address.value))

    if not create_contacts:
        for address in unknown:
            result[address.value] = Resolution(None, company_of(address))
        return result
    for address in unknown:
        if not address.may_create:
            result[address.value] = Resolution(None, company_of(address))
    unknown = [a for a in unknown if a.may_create]
    if not unknown:
        return result

    with transaction.atomic():
        contacts = Contact.objects.bulk_create(
            [
                Contact(
                    name=(address.display_name or "")[:200],
                    company_id=company_of(address),
                    created_from=(
                        Contact.CreatedFrom.EMAIL
                        if address.kind == ContactIdentifier.Kind.EMAIL
                        else Contact.CreatedFrom.PHONE
                    ),
                )
                for address in unknown
            ]
        )
        ContactIdentifier.objects.bulk_create(
            [
                ContactIdentifier(contact_id=contact.pk, kind=address.kind, value=address.value)
                for contact, address in zip(contacts, unknown, strict=True)
            ],
            ignore_conflicts=True,
        )
        winners = _identifier_matches([a.value for a in unknown])
        losers = [c.pk for c, a in zip(contacts, unknown, strict=True) if winners[a.value][0] != c.pk]
        if losers:
            Contact.objects.filter(pk__in=losers).delete()
    for value, (contact_id, company_id) in winners.items():
        result[value] = Resolution(contact_id, company_id)
    return result
