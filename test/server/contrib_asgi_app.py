"""The ASGI application the uvicorn and gunicorn tests serve.

Every HTTP response is JSON describing the scope: ``client``, ``server``,
``scheme`` and what ``scope['extensions']['proxy_protocol']`` holds. A
WebSocket connection is accepted, sent the same description, then has its
text messages echoed.

"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def describe(scope: dict[str, Any]) -> dict[str, Any]:
    """What the tests check, as JSON-able values."""
    client = scope.get('client')
    server = scope.get('server')
    proxy = (scope.get('extensions') or {}).get('proxy_protocol')
    described: dict[str, Any] = {
        'type': scope['type'],
        'client': list(client) if client else None,
        'server': list(server) if server else None,
        'scheme': scope.get('scheme'),
        'proxy': None,
    }
    if proxy is not None:
        info = proxy['info']
        tlv = proxy['tlv']
        socket_peer = proxy['socket_peername']
        described['proxy'] = {
            'version': info.version,
            'proxied': info.proxied,
            'trusted': info.trusted,
            'socket_peername': list(socket_peer) if socket_peer else None,
            'tlv_types': sorted(tlv.keys()),
            'unique_id': tlv.unique_id.decode('latin-1'),
            'result_source': str(proxy['result'].source[0])
            if proxy['result'] is not None and proxy['result'].source
            else None,
        }
    return described


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The application."""
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    if scope['type'] == 'http':
        more = True
        while more:
            message = await receive()
            more = message.get('more_body', False)
        body = json.dumps(describe(scope)).encode()
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'application/json'),
                                (b'content-length', str(len(body)).encode())]})
        await send({'type': 'http.response.body', 'body': body})
        return
    if scope['type'] == 'websocket':
        message = await receive()
        assert message['type'] == 'websocket.connect'
        await send({'type': 'websocket.accept'})
        await send({'type': 'websocket.send',
                    'text': json.dumps(describe(scope))})
        while True:
            message = await receive()
            if message['type'] == 'websocket.disconnect':
                return
            await send({'type': 'websocket.send',
                        'text': 'echo:' + message.get('text', '')})
