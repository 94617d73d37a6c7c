using System.Text.Json.Nodes;

namespace LbAllocator.NetTests;

/// <summary>The speaker's /metrics, /healthz and /readyz as Prometheus and the kubelet see them, and its JSON logs.</summary>
[Collection(LabCollection.Name)]
public class SpeakerStatusTests(Lab lab) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task The_owner_counts_requests_replies_and_gratuitous_packets_per_address()
    {
        await lab.CreateServiceAsync("metrics", ip: "192.0.2.211");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.211");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(lab.Macs[owner], await lab.ArpingAsync("192.0.2.211"));
        }

        var metrics = await MetricsAsync(owner);
        // WaitForArpOwnerAsync asked at least once more than the five above.
        Assert.InRange(metrics["lballocator_speaker_requests_received_total{address=\"192.0.2.211\",protocol=\"arp\"}"], 6, 1000);
        Assert.InRange(metrics["lballocator_speaker_replies_sent_total{address=\"192.0.2.211\",protocol=\"arp\"}"], 6, 1000);
        Assert.True(metrics["lballocator_speaker_gratuitous_sent_total{address=\"192.0.2.211\"}"] >= 2, "a gratuitous request and reply on takeover");
        Assert.True(metrics["lballocator_speaker_addresses_announced"] >= 1);
        Assert.Equal(1, metrics["lballocator_speaker_alive"]);
        Assert.True(metrics["lballocator_speaker_ownership_changes_total{change=\"acquired\"}"] >= 1);
        Assert.True(metrics.Where(m => m.Key.StartsWith("lballocator_kubernetes_requests_total{method=\"GET\"", StringComparison.Ordinal)).Sum(m => m.Value) >= 7, "the lists and watches are counted");
        foreach (var other in Lab.Nodes.Where(n => n != owner))
        {
            Assert.DoesNotContain("address=\"192.0.2.211\"", (await lab.SpeakerStatusAsync(other, "/metrics")).Body, StringComparison.Ordinal);
        }

        var ready = await lab.SpeakerStatusAsync(owner, "/readyz");
        Assert.Equal(200, ready.Code);
        Assert.Matches(
            "^ok caches: synced\nok key: signing with key [0-9a-f]{8}; accepting [0-9a-f]{8}\nok lan: member of the segment, answering; 2 of 2 ring neighbours heard\nok lease: lease lballocator-speaker-" + owner + " renewed\n$",
            ready.Body);
        Assert.Equal(200, (await lab.SpeakerStatusAsync(owner, "/healthz")).Code);

        // One JSON object per line, with the Service, addresses and node as fields.
        var announcing = lab.SpeakerLog(owner).Where(l => l.StartsWith('{')).Select(l => JsonNode.Parse(l)!)
            .Single(j => (string?)j["State"]?["Service"] == "default/metrics" && ((string?)j["State"]?["{OriginalFormat}"])?.StartsWith("Announcing", StringComparison.Ordinal) == true);
        Assert.Equal("192.0.2.211", (string?)announcing["State"]!["Addresses"]);
        Assert.Contains(announcing["Scopes"]!.AsArray(), s => (string?)s?["Node"] == owner);
    }

    [RealApiFact]
    public async Task A_speaker_cut_off_from_the_api_stays_ready_and_says_so()
    {
        var node = Lab.Nodes[0];
        await lab.CutApiAsync(node);
        try
        {
            // A renewal that hangs gives up after a renew interval (10 s).
            await Eventually.HoldsAsync(async () => (await lab.SpeakerStatusAsync(node, "/readyz")).Body.Contains("not renewed", StringComparison.Ordinal) ? null : "no renewal failed yet", TimeSpan.FromSeconds(30));
            var (code, body) = await lab.SpeakerStatusAsync(node, "/readyz");
            Assert.Equal(200, code);
            Assert.Matches("ok lease: lease lballocator-speaker-" + node + " not renewed for [0-9]+ s: the API server is unreachable, answering goes on as the LAN decides\n", body);
            Assert.Contains("ok lan: member of the segment, answering; 2 of 2 ring neighbours heard", body, StringComparison.Ordinal);
            // Alive all the same: restarting would not bring the API server back.
            Assert.Equal(200, (await lab.SpeakerStatusAsync(node, "/healthz")).Code);
            var metrics = await MetricsAsync(node);
            Assert.True(metrics["lballocator_speaker_lease_renew_failures_total"] >= 1);
            Assert.Equal(1, metrics["lballocator_speaker_alive"]);
        }
        finally
        {
            await lab.RestoreApiAsync(node);
        }

        await Eventually.HoldsAsync(async () => (await lab.SpeakerStatusAsync(node, "/readyz")).Body.Contains(" renewed\n", StringComparison.Ordinal) ? null : "lease not renewed again", TimeSpan.FromSeconds(30));
    }

    private async Task<Dictionary<string, double>> MetricsAsync(string node)
    {
        var (code, body) = await lab.SpeakerStatusAsync(node, "/metrics");
        Assert.Equal(200, code);
        return LbAllocator.TestApiServer.PrometheusText.Parse(body);
    }
}
