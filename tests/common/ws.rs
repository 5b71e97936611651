//! WebSocket test client.
