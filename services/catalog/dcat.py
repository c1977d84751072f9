"""DCAT-AP 3 JSON-LD for products and for the whole catalog.

The vocabulary CKAN, data.europa.eu and dataspace connectors (Eclipse EDC's
catalog, Gaia-X) exchange: a product is a ``dcat:Dataset`` whose distribution is
served by a ``dcat:DataService`` (the provider's query-only data service); the
usage policy is an ODRL offer, as in dataspace protocol catalogs. Pages of the
catalog use Hydra ``PartialCollectionView`` as data.europa.eu does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.catalog.models import Product, ProductVersion

CONTEXT: dict[str, Any] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "odrl": "http://www.w3.org/ns/odrl/2/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "hydra": "http://www.w3.org/ns/hydra/core#",
    "adms": "http://www.w3.org/ns/adms#",
    "sluice": "https://sluice.dev/ns/catalog#",
    "dct:issued": {"@type": "xsd:dateTime"},
    "dct:modified": {"@type": "xsd:dateTime"},
}

# EU access-right authority table: who may access the data at all.
_ACCESS_RIGHTS = {
    "L1_public": "PUBLIC",
    "L2_internal": "RESTRICTED",
    "L3_sensitive": "NON_PUBLIC",
}
_ACCESS_RIGHT_BASE = "http://publications.europa.eu/resource/authority/access-right/"


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _agent(org: str, name: str | None = None) -> dict[str, Any]:
    agent: dict[str, Any] = {"@id": f"urn:sluice:org:{org}", "@type": "foaf:Agent"}
    if name:
        agent["foaf:name"] = name
    return agent


def _named_agent(name: str) -> dict[str, Any]:
    return {"@type": "foaf:Agent", "foaf:name": name}


def _policy(product_iri: str, policy: dict[str, Any]) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = [
        {"odrl:leftOperand": "odrl:purpose", "odrl:operator": {"@id": "odrl:isAnyOf"},
         "odrl:rightOperand": policy["allowed_purposes"]},
        {"odrl:leftOperand": "odrl:spatial", "odrl:operator": {"@id": "odrl:isAnyOf"},
         "odrl:rightOperand": policy["territories"]},
        {"odrl:leftOperand": "odrl:elapsedTime", "odrl:operator": {"@id": "odrl:lteq"},
         "odrl:rightOperand": {"@value": f"P{policy['max_duration_days']}D", "@type": "xsd:duration"}},
    ]
    offer: dict[str, Any] = {
        "@type": "odrl:Offer",
        "odrl:target": {"@id": product_iri},
        "odrl:permission": [{"odrl:action": {"@id": "odrl:use"}, "odrl:constraint": constraints}],
    }
    if not policy["resale_allowed"]:
        offer["odrl:prohibition"] = [{"odrl:action": {"@id": "odrl:sell"}}]
    return offer


def dataset(base_url: str, product: Product, version: ProductVersion) -> dict[str, Any]:
    """One product version as a ``dcat:Dataset`` (no ``@context``)."""
    c = version.content
    iri = f"{base_url}/v1/products/{product.id}"
    service_url = c["delivery"]["data_service_url"]
    rights = c["rights"]
    body: dict[str, Any] = {
        "@id": iri,
        "@type": "dcat:Dataset",
        "dct:identifier": product.id,
        "dct:title": c["title"],
        "dct:description": c["description"] or c["summary"],
        "dcat:keyword": c["tags"],
        "dcat:theme": {"@type": "skos:Concept", "skos:prefLabel": c["category"]},
        # Named as the provider declared who operates the product (the operating right holder).
        "dct:publisher": _agent(product.provider_org, rights["operating_right_holder"]),
        "dct:rightsHolder": _named_agent(rights["resource_holder"]),
        "dct:provenance": {"@type": "dct:ProvenanceStatement", "rdfs:label": rights["provenance"]},
        "dct:license": {"@type": "dct:LicenseDocument", "rdfs:label": rights["licence"]},
        "dct:accessRights": {"@id": _ACCESS_RIGHT_BASE + _ACCESS_RIGHTS.get(version.grade, "NON_PUBLIC")},
        "dct:issued": _ts(product.listed_at),
        "dct:modified": _ts(version.published_at),
        "dcat:version": str(version.version),
        "dcat:landingPage": {"@id": iri},
        "dct:source": [{"@id": f"{base_url}/v1/products/{pid}"} for pid in c["derived_from"]],
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dcat:accessURL": {"@id": service_url},
                "dct:license": {"@type": "dct:LicenseDocument", "rdfs:label": rights["licence"]},
                "dcat:accessService": {
                    "@type": "dcat:DataService",
                    "dct:title": f"{c['title']} (query-only data service)",
                    "dcat:endpointURL": {"@id": service_url},
                    "dcat:servesDataset": {"@id": iri},
                },
                "sluice:deliveryMode": c["delivery"]["mode"],
            }
        ],
        "odrl:hasPolicy": _policy(iri, c["usage_policy"]),
        "sluice:grade": version.grade,
        "sluice:personalData": c["personal_data"],
        "sluice:processingRightHolder": rights["processing_right_holder"],
        "sluice:operatingRightHolder": rights["operating_right_holder"],
        "sluice:status": product.status,
    }
    return body


def product_document(base_url: str, product: Product, version: ProductVersion) -> dict[str, Any]:
    return {"@context": CONTEXT, **dataset(base_url, product, version)}


def catalog_document(
    base_url: str,
    pairs: list[tuple[Product, ProductVersion]],
    *,
    page_url: str,
    first_url: str,
    next_url: str | None,
) -> dict[str, Any]:
    view: dict[str, Any] = {"@id": page_url, "@type": "hydra:PartialCollectionView",
                            "hydra:first": {"@id": first_url}}
    if next_url:
        view["hydra:next"] = {"@id": next_url}
    return {
        "@context": CONTEXT,
        "@id": f"{base_url}/v1/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": "Sluice data-product catalog",
        "dct:description": "Listed data products and query-only data services on Sluice.",
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": "Sluice marketplace operator"},
        "dcat:dataset": [dataset(base_url, p, v) for p, v in pairs],
        "hydra:view": view,
    }
