from .conftest import Hub
def test_scratch(hub: Hub) -> None:
    r = hub.client.get(f"{hub.url}user/alice/api/contents", headers={"Authorization": f"token {hub.tokens['bob']}"})
    print("contents bob->alice", r.status_code, r.text[:300])
    r = hub.client.get(f"{hub.url}user/alice/api/me", headers={"Authorization": f"token {hub.tokens['alice']}"})
    print("me", r.status_code, r.text[:600])
    r = hub.client.get(f"{hub.url}user/alice/api/ecode/projects", headers={"Authorization": "token bogus"})
    print("bogus", r.status_code, r.text[:300])
    print(hub.log_tail(400))
