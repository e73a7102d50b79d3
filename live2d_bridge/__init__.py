"""The Live2D bridge: WebSocket event server and the web page it serves."""
