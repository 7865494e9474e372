"""The OpenAPI 3.1 description of the till API, served at /v1/openapi.json (a test checks that
it describes every route bot/api.py serves, and nothing else)."""

from __future__ import annotations

from typing import Any, Final

SIGNING: Final = """\
Every request except this description is signed with the store's key (`pointsbot api-keys
create --store NAME` prints its id and secret once). Send four headers:

- `X-Pointsbot-Key`: the key id (`pk_...`);
- `X-Pointsbot-Timestamp`: now, in Unix seconds; refused beyond ±[api] clock_skew_seconds
  (default 300) of the server's clock (401 `stale_timestamp`);
- `X-Pointsbot-Nonce`: 8 to 64 characters of `A-Z a-z 0-9 _ -`, new for every request; a
  nonce the key signed with before is refused (401 `replayed_nonce`);
- `X-Pointsbot-Signature`: the lowercase hex HMAC-SHA256, keyed with the secret, of

      METHOD + "\\n" + PATH + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + hex(SHA-256(BODY))

  where METHOD is upper case, PATH is the request path as sent (no query string) and BODY the
  exact bytes sent (empty for GET).

A refused request writes nothing and is answered `{"error": {"code": ..., "message": ...}}`
(with `field` when one field is at fault): 400 malformed JSON, 401 signature refused, 404 no
such member, 409 the receipt (or return id) was booked before with other details, 413 body
over [api] max_body_bytes, 422 a missing or invalid field (or a programme rule: the code is
the rule's message id, the message in the programme's language), 429 over [api]
requests_per_minute for the key (see Retry-After).

A purchase is booked once per receipt: the same request again is answered 200 with the first
answer (and `Idempotent-Replayed: true`); so is a return, once per return id.
"""

_ERROR: Final = {"$ref": "#/components/responses/Error"}
_SIGNED: Final[list[dict[str, list[str]]]] = [
    {"key": [], "timestamp": [], "nonce": [], "signature": []}
]


def _refusals(*statuses: int) -> dict[str, Any]:
    return {str(status): _ERROR for status in statuses}


def _header(name: str, description: str) -> dict[str, Any]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


_TIER: Final = {
    "oneOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["id", "name"],
            "properties": {
                "id": {"type": "string"},
                "name": {
                    "type": ["object", "null"],
                    "properties": {"zh-CN": {"type": "string"}, "en": {"type": "string"}},
                },
            },
        },
    ],
    "description": "The member's tier (null: the programme has no tiers).",
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "pointsbot till API",
        "version": "1",
        "description": "Book purchases and purchase returns and look members up from a till."
        "\n\n" + SIGNING,
    },
    "security": _SIGNED,
    "paths": {
        "/v1/purchases": {
            "post": {
                "summary": "Award a purchase's points (once per receipt).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Purchase"}}
                    },
                },
                "responses": {
                    "201": {
                        "description": "Booked now.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PurchaseBooked"}
                            }
                        },
                    },
                    "200": {
                        "description": "Booked before: the first answer again.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PurchaseBooked"}
                            }
                        },
                    },
                    **_refusals(400, 401, 404, 409, 413, 422, 429),
                },
            }
        },
        "/v1/purchase-returns": {
            "post": {
                "summary": "Take a refunded purchase's points back (once per return id).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/PurchaseReturn"}
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "Returned now.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PurchaseReturned"}
                            }
                        },
                    },
                    "200": {
                        "description": "Returned before: the first answer again.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PurchaseReturned"}
                            }
                        },
                    },
                    **_refusals(400, 401, 409, 413, 422, 429),
                },
            }
        },
        "/v1/members/{code}": {
            "get": {
                "summary": "What a till screen shows of a member (nothing personal).",
                "parameters": [
                    {
                        "name": "code",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The member code (10 digits; spaces or dashes allowed).",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The member.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Member"}}
                        },
                    },
                    **_refusals(401, 404, 422, 429),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This description (unsigned).",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 description."}},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "key": _header("X-Pointsbot-Key", "The key id."),
            "timestamp": _header("X-Pointsbot-Timestamp", "Unix seconds."),
            "nonce": _header("X-Pointsbot-Nonce", "8-64 of [A-Za-z0-9_-], new every request."),
            "signature": _header("X-Pointsbot-Signature", "Hex HMAC-SHA256: see the top."),
        },
        "responses": {
            "Error": {
                "description": "Refused; nothing was written.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                    }
                },
            },
            "Purchase": {
                "type": "object",
                "required": ["receipt", "member_code", "amount"],
                "additionalProperties": False,
                "properties": {
                    "receipt": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "member_code": {"type": "string"},
                    "amount": {"type": "string", "description": 'Yuan, like "12.50".'},
                    "category": {"type": "string", "description": "Default: the default one."},
                    "purchased_at": {
                        "type": "string",
                        "format": "date-time",
                        "description": "ISO 8601 with its offset; default: now.",
                    },
                },
            },
            "PurchaseBooked": {
                "type": "object",
                "required": ["receipt", "member_code", "points", "available", "tier"],
                "properties": {
                    "receipt": {"type": "string"},
                    "member_code": {"type": "string"},
                    "points": {"type": "integer"},
                    "available": {"type": "integer"},
                    "tier": _TIER,
                },
            },
            "PurchaseReturn": {
                "type": "object",
                "required": ["receipt", "return_id"],
                "additionalProperties": False,
                "properties": {
                    "receipt": {"type": "string"},
                    "return_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "amount": {
                        "type": "string",
                        "description": "Yuan refunded; default: the whole purchase.",
                    },
                },
            },
            "PurchaseReturned": {
                "type": "object",
                "required": [
                    "receipt",
                    "return_id",
                    "member_code",
                    "refunded",
                    "points",
                    "taken",
                    "owed",
                    "available",
                ],
                "properties": {
                    "receipt": {"type": "string"},
                    "return_id": {"type": "string"},
                    "member_code": {"type": "string"},
                    "refunded": {"type": "string", "description": "Yuan."},
                    "points": {"type": "integer", "description": "Points the return undoes."},
                    "taken": {"type": "integer", "description": "Taken back now."},
                    "owed": {"type": "integer", "description": "Owed from future earnings."},
                    "available": {"type": "integer"},
                },
            },
            "Member": {
                "type": "object",
                "required": ["member_code", "name_initial", "tier", "available"],
                "additionalProperties": False,
                "properties": {
                    "member_code": {"type": "string"},
                    "name_initial": {"type": "string"},
                    "tier": _TIER,
                    "available": {"type": "integer"},
                },
            },
        },
    },
}
