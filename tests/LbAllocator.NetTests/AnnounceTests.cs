using System.Diagnostics;
using k8s;
using k8s.Models;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>
/// The speaker against real peers: arping, the client's kernel (NDP) and tcpdump in the client namespace, the kernel's
/// neighbour handling, speakers as real processes killed with real signals. Tests share one lab and run
/// one after another; each uses its own Service and leaves every speaker running.
/// </summary>
[Collection(LabCollection.Name)]
public class AnnounceTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task Arping_and_neighbor_discovery_get_the_owners_mac()
    {
        var service = await lab.CreateServiceAsync("web", ip: "192.0.2.200,2001:db8::200", families: ["IPv4", "IPv6"]);
        var status = await WaitForL2StatusAsync("web");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.200");
        Assert.Equal(status, owner);
        Assert.Equal(lab.Macs[owner], await lab.NdpAsync("2001:db8::200"));

        var events = await lab.Client.CoreV1.ListNamespacedEventAsync("default");
        Assert.Contains(events.Items, e => e.InvolvedObject.Name == "web" && e.Reason == "nodeAssigned" && e.Message.Contains($"from node {owner}", StringComparison.Ordinal));
        Assert.Equal(["192.0.2.200", "2001:db8::200"], service.Status.LoadBalancer.Ingress.Select(i => i.Ip));
    }

    [RealApiFact]
    public async Task Nobody_answers_for_addresses_that_are_not_assigned()
    {
        await lab.CreateServiceAsync("assigned", ip: "192.0.2.205");
        await lab.WaitForArpOwnerAsync("192.0.2.205");
        // In the pool but not assigned, and outside every pool: no speaker may answer.
        Assert.Null(await lab.ArpingAsync("192.0.2.206"));
        Assert.Null(await lab.ArpingAsync("192.0.2.250"));
        Assert.Null(await lab.NdpAsync("2001:db8::206"));
    }

    [RealApiFact]
    public async Task Killing_the_owner_moves_the_address_within_five_seconds_with_gratuitous_arp()
    {
        await lab.CreateServiceAsync("failover", ip: "192.0.2.201");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.201");
        using var capture = await Shell.CaptureAsync(lab.ClientNs, "-n", "-e", "-l", "arp");

        var killed = Stopwatch.StartNew();
        await lab.Speaker(owner).SignalAsync("KILL");
        var successor = await lab.WaitForArpOwnerAsync("192.0.2.201", not: owner, timeout: TimeSpan.FromSeconds(10));
        var failover = killed.Elapsed;
        Assert.True(failover < TimeSpan.FromSeconds(5), $"failover took {failover.TotalSeconds:F1} s");

        // The successor announced itself: a gratuitous ARP for the address from its MAC.
        var successorMac = lab.Macs[successor];
        await Eventually.HoldsAsync(() => Task.FromResult(
            capture.Lines.Any(l => l.Contains(successorMac + " > ff:ff:ff:ff:ff:ff", StringComparison.OrdinalIgnoreCase) && l.Contains("192.0.2.201 tell 192.0.2.201", StringComparison.Ordinal))
                ? null : "no gratuitous ARP request seen: " + string.Join(" | ", capture.Lines)), TimeSpan.FromSeconds(5));
        Assert.Contains(capture.Lines, l => l.Contains("Reply 192.0.2.201 is-at " + successorMac, StringComparison.OrdinalIgnoreCase));

        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
    }

    [RealApiFact]
    public async Task Sigterm_hands_over_at_once()
    {
        const string ip = "192.0.2.202";
        await lab.CreateServiceAsync("handover", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(500);
        var stopped = DateTimeOffset.UtcNow;
        await lab.Speaker(owner).SignalAsync("TERM");
        // The leaving heartbeat tells the others at once: nobody waits for it to go unheard or its lease to go.
        var handover = await watch.TakeoverAsync(lab.Macs[owner], stopped, TimeSpan.FromSeconds(10));
        Assert.True(await lab.Speaker(owner).WaitForExitAsync(TimeSpan.FromSeconds(10)), "the speaker did not exit on SIGTERM");
        output.WriteLine($"SIGTERM handover: {handover:F3} s; two nodes answering {watch.Tally().Double * 1000:F0} ms");
        Assert.True(handover <= 0.3, $"handover took {handover:F3} s");
        Assert.Equal(0, watch.Tally().Double);

        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
    }

    [RealApiFact]
    public async Task Local_policy_follows_the_ready_endpoints()
    {
        await lab.CreateServiceAsync("local", ip: "192.0.2.203", policy: "Local");
        await WaitForEventAsync("local", "NotAnnounced");
        Assert.Null(await lab.ArpingAsync("192.0.2.203")); // no ready endpoint anywhere: nobody announces

        await SetEndpointsAsync("local", "node2");
        Assert.Equal("node2", await lab.WaitForArpOwnerAsync("192.0.2.203"));

        await SetEndpointsAsync("local", "node3");
        Assert.Equal("node3", await lab.WaitForArpOwnerAsync("192.0.2.203", not: "node2"));
    }

    [RealApiFact]
    public async Task The_exclusion_label_moves_the_address()
    {
        await lab.CreateServiceAsync("exclude", ip: "192.0.2.204");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.204");
        await lab.SetExcludedAsync(owner, true);
        try
        {
            Assert.NotEqual(owner, await lab.WaitForArpOwnerAsync("192.0.2.204", not: owner));
        }
        finally
        {
            await lab.SetExcludedAsync(owner, false);
        }
    }

    [RealApiFact]
    public async Task An_api_server_frozen_for_a_minute_changes_nothing_on_the_wire()
    {
        const string ip = "192.0.2.207";
        var freeze = TimeSpan.FromSeconds(60); // the issue's figure: well past every lease (3 s) and watch retry
        await lab.CreateServiceAsync("frozen", ip: ip);
        var owner = await lab.WaitForArpOwnerAsync(ip);
        await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync("frozen"))?.Status?.Node == owner ? null : "no status for frozen yet", TimeSpan.FromSeconds(10));
        using var watch = await ArpWatch.StartAsync(lab, ip);
        await Task.Delay(TimeSpan.FromSeconds(1));
        // The API server hangs (SIGSTOP): no lease is renewed or seen.
        await lab.Server.FreezeAsync();
        try
        {
            await Task.Delay(freeze);
        }
        finally
        {
            await lab.Server.ThawAsync();
        }

        // After it: watches come back after their retry delays; still nobody else may answer.
        await Task.Delay(TimeSpan.FromSeconds(5));
        var (doubled, silent, asked) = watch.Tally();
        var longest = watch.LongestSilence();
        output.WriteLine($"API server frozen {freeze.TotalSeconds:F0} s: {asked} ARP requests; answered by {string.Join(", ", watch.Answerers())} (owner {lab.Macs[owner]}); "
            + $"two nodes answering {doubled * 1000:F0} ms; nobody answering {silent:F2} s in all, longest {longest:F2} s");
        // 66 s at 50 questions/s is 3,300; a loaded machine replays somewhat fewer.
        Assert.True(asked > 2500, $"only {asked} questions were seen");
        Assert.Equal(0, doubled);
        Assert.True(longest <= 0.2, $"a silence of {longest:F2} s");
        Assert.Equal([lab.Macs[owner]], watch.Answerers());
    }

    private async Task SetEndpointsAsync(string service, string node)
    {
        var slice = new V1EndpointSlice
        {
            Metadata = new V1ObjectMeta { Name = service + "-abc", NamespaceProperty = "default", Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = service } },
            AddressType = "IPv4",
            Endpoints = [new V1Endpoint { Addresses = ["10.0.0.1"], NodeName = node, Conditions = new V1EndpointConditions { Ready = true } }],
        };
        try
        {
            await lab.Client.DiscoveryV1.CreateNamespacedEndpointSliceAsync(slice, "default");
        }
        catch (k8s.Autorest.HttpOperationException)
        {
            await lab.Client.DiscoveryV1.ReplaceNamespacedEndpointSliceAsync(slice, slice.Metadata.Name, "default");
        }
    }

    private async Task<string> WaitForL2StatusAsync(string service)
    {
        string? node = null;
        await Eventually.HoldsAsync(async () =>
        {
            node = (await lab.L2StatusAsync(service))?.Status?.Node;
            return node is null ? $"no ServiceL2Status for {service}" : null;
        }, TimeSpan.FromSeconds(30));
        return node!;
    }

    private async Task WaitForEventAsync(string service, string reason) =>
        await Eventually.HoldsAsync(async () =>
        {
            var events = await lab.Client.CoreV1.ListNamespacedEventAsync("default");
            return events.Items.Any(e => e.InvolvedObject.Name == service && e.Reason == reason) ? null : $"no {reason} event on {service}";
        }, TimeSpan.FromSeconds(30));
}
