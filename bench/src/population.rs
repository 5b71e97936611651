//! Setting the stage over REST: accounts (each with its session token) and friendships,
//! created concurrently over a few kept-alive connections.
use crate::http::Http;
use crate::Res;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const PASSWORD: &str = "bench-password-1";

#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub token: String,
}

/// Runs `job(http, i)` for i in 0..n on `concurrency` connections; results in index order.
async fn for_each<T, F, Fut>(addr: SocketAddr, n: usize, concurrency: usize, job: F) -> Res<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Http, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Http, Res<T>)> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (next, job) = (next.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            let mut http = Http::new(addr);
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, crate::Error>(done);
                }
                let (back, result) = job(http, i).await;
                http = back;
                done.push((i, result?));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Registers `{prefix}{i}` for i in 0..n.
pub async fn register(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Res<Vec<Account>> {
    let prefix = prefix.to_owned();
    for_each(addr, n, concurrency, move |mut http, i| {
        let username = format!("{prefix}{i}");
        async move {
            let result = register_one(&mut http, &username).await;
            (http, result)
        }
    })
    .await
}

pub async fn register_one(http: &mut Http, username: &str) -> Res<Account> {
    let body = json!({"username": username, "password": PASSWORD});
    let (status, answer) = http
        .request("POST", "/api/v1/auth/register", None, Some(&body))
        .await?;
    if status != 201 {
        return Err(format!("registering {username}: {status} {answer}").into());
    }
    let token = answer["token"]
        .as_str()
        .ok_or("registration answer without a token")?;
    Ok(Account {
        username: username.to_owned(),
        token: token.to_owned(),
    })
}

/// Registers `2 * n` accounts named after `prefix` and makes them `n` pairs of friends.
pub async fn friend_pairs(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
) -> Res<Vec<(Account, Account)>> {
    let accounts = register(addr, prefix, 2 * n, 8).await?;
    let pairs: Vec<_> = (0..n)
        .map(|i| (accounts[2 * i].clone(), accounts[2 * i + 1].clone()))
        .collect();
    befriend(addr, pairs.clone(), 8).await?;
    Ok(pairs)
}

/// Makes each pair friends: the first asks, the second accepts.
pub async fn befriend(
    addr: SocketAddr,
    pairs: Vec<(Account, Account)>,
    concurrency: usize,
) -> Res<()> {
    for_each_pair(addr, pairs, concurrency, Relation::Befriend).await
}

/// Ends each pair's friendship (the first removes the second).
pub async fn unfriend(
    addr: SocketAddr,
    pairs: Vec<(Account, Account)>,
    concurrency: usize,
) -> Res<()> {
    for_each_pair(addr, pairs, concurrency, Relation::Unfriend).await
}

#[derive(Clone, Copy)]
enum Relation {
    Befriend,
    Unfriend,
}

async fn for_each_pair(
    addr: SocketAddr,
    pairs: Vec<(Account, Account)>,
    concurrency: usize,
    relation: Relation,
) -> Res<()> {
    let pairs = Arc::new(pairs);
    for_each(addr, pairs.len(), concurrency, move |mut http, i| {
        let pairs = pairs.clone();
        async move {
            let (a, b) = &pairs[i];
            let result = match relation {
                Relation::Befriend => befriend_one(&mut http, a, b).await,
                Relation::Unfriend => unfriend_one(&mut http, a, b).await,
            };
            (http, result)
        }
    })
    .await?;
    Ok(())
}

async fn unfriend_one(http: &mut Http, a: &Account, b: &Account) -> Res<()> {
    let path = format!("/api/v1/friends/{}", b.username);
    match http.request("DELETE", &path, Some(&a.token), None).await? {
        (200 | 204, _) => Ok(()),
        (status, answer) => Err(format!(
            "unfriending {} -> {}: {status} {answer}",
            a.username, b.username
        )
        .into()),
    }
}

async fn befriend_one(http: &mut Http, a: &Account, b: &Account) -> Res<()> {
    let body = json!({"username": b.username});
    let (status, answer) = http
        .request(
            "POST",
            "/api/v1/friends/requests",
            Some(&a.token),
            Some(&body),
        )
        .await?;
    if status != 201 && status != 200 {
        return Err(format!(
            "friend request {} -> {}: {status} {answer}",
            a.username, b.username
        )
        .into());
    }
    let path = format!("/api/v1/friends/requests/{}/accept", a.username);
    let (status, answer) = http.request("POST", &path, Some(&b.token), None).await?;
    if status != 200 {
        return Err(format!(
            "accepting {} <- {}: {status} {answer}",
            b.username, a.username
        )
        .into());
    }
    Ok(())
}
