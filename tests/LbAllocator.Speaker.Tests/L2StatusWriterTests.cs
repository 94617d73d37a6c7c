using System.Text.Json;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.Kubernetes.Watching;
using LbAllocator.TestApiServer;
using Microsoft.Extensions.Logging.Abstractions;

namespace LbAllocator.Speaker.Tests;

/// <summary>
/// Two speakers writing one ServiceL2Status on the real kube-apiserver: the owner (node, interfaces and MACs,
/// AddressConflict) and a verifier on another node (Verified). Neither may erase the other's condition.
/// </summary>
public sealed class L2StatusWriterTests(KubeApiServerFixture fixture) : IClassFixture<KubeApiServerFixture>
{
    private const string Ns = "lballocator-system";
    private static readonly Ip Address = Ip.Parse("192.0.2.10");
    private static readonly NetworkInterfaceInfo Eth0 = new("eth0", Up: true, Broadcast: true, Loopback: false, NoArp: false, Enslaved: false, Ethernet: true);
    private static readonly Dictionary<string, MacAddress> Macs = new() { ["eth0"] = new MacAddress(0x02_00_00_00_00_0a) };

    [RealApiFact]
    public async Task The_owner_and_the_verifier_each_change_only_their_own_condition()
    {
        var server = fixture.Server;
        await server.KubectlMustAsync("apply", "-k", Path.Combine(InstallManifests.RepoRoot, "config", "crd"));
        await server.KubectlMustAsync("wait", "--for=condition=Established", "--timeout=60s", "crd/servicel2statuses.lballocator.io");
        await server.KubectlAsync(["create", "namespace", Ns]);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var (owner, ownerRun) = await StartAsync(server, "node-a", stop.Token);
        var (verifier, verifierRun) = await StartAsync(server, "node-b", stop.Token);
        var name = L2StatusWriter.StatusName("default", "web");

        owner.Sync(Plan(), new Dictionary<Ip, AddressConflict>(), Macs);
        var status = await EventuallyAsync(server, name, s => Condition(s, L2Conditions.AddressConflict)?.Status == "False");
        Assert.Equal("02:00:00:00:00:0a", Assert.Single(status.Status!.Interfaces!).Mac);

        verifier.SetVerified(name, verified: true, "Answered", "192.0.2.10 answered by node node-a (02:00:00:00:00:0a)");
        status = await EventuallyAsync(server, name, s => Condition(s, L2Conditions.Verified)?.Status == "True");
        Assert.Equal("False", Condition(status, L2Conditions.AddressConflict)?.Status);
        Assert.Equal("node-a", status.Status!.Node);

        // Each writes again: the other's condition stays as it was.
        owner.Sync(Plan(), new Dictionary<Ip, AddressConflict> { [Address] = new(new MacAddress(0x02_00_00_00_00_98), DateTimeOffset.UtcNow, 1) }, Macs);
        status = await EventuallyAsync(server, name, s => Condition(s, L2Conditions.AddressConflict)?.Status == "True");
        Assert.Equal("True", Condition(status, L2Conditions.Verified)?.Status);
        verifier.SetVerified(name, verified: false, "NoAnswer", "192.0.2.10 not answered");
        status = await EventuallyAsync(server, name, s => Condition(s, L2Conditions.Verified)?.Status == "False");
        Assert.Equal("True", Condition(status, L2Conditions.AddressConflict)?.Status);
        Assert.Equal("node-a", status.Status!.Node);

        // Both write at once, many times over: each lands, neither erases the other (a merge patch of the list would).
        for (var i = 0; i < 5; i++)
        {
            owner.Sync(Plan(), new Dictionary<Ip, AddressConflict> { [Address] = new(new MacAddress(0x02_00_00_00_00_99 + (ulong)i), DateTimeOffset.UtcNow, 1) }, Macs);
            verifier.SetVerified(name, verified: i % 2 == 0, i % 2 == 0 ? "Answered" : "NoAnswer", $"round {i}");
        }

        status = await EventuallyAsync(server, name, s =>
            Condition(s, L2Conditions.AddressConflict)?.Message.StartsWith("192.0.2.10 is in use by 02:00:00:00:00:9d", StringComparison.Ordinal) == true
            && Condition(s, L2Conditions.Verified)?.Message.StartsWith("round 4; last checked ", StringComparison.Ordinal) == true);
        Assert.Equal("True", Condition(status, L2Conditions.AddressConflict)!.Status);
        Assert.Equal("True", Condition(status, L2Conditions.Verified)!.Status);
        Assert.Equal(2, status.Status!.Conditions!.Count);

        await stop.CancelAsync();
        await Task.WhenAll(ownerRun, verifierRun);
    }

    private static async Task<(L2StatusWriter Writer, Task Run)> StartAsync(KubeApiServer server, string node, CancellationToken cancellationToken)
    {
        var client = server.CreateApi();
        var statuses = new ResourceCache<V1Alpha1ServiceL2Status>(Sources.ServiceL2Statuses(client, Ns), NullLogger.Instance);
        var writer = new L2StatusWriter(client, new SpeakerOptions { NodeName = node }, statuses, TimeProvider.System, NullLogger<L2StatusWriter>.Instance);
        var run = Task.WhenAll(statuses.RunAsync(cancellationToken), writer.RunAsync(cancellationToken));
        await statuses.WaitForSyncAsync(cancellationToken);
        return (writer, Quiet(run));

        static async Task Quiet(Task task)
        {
            try
            {
                await task;
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    private static SpeakerPlan Plan()
    {
        var config = ConfigValidator.Validate([new PoolSpec("main", ["192.0.2.0/24"])], [new Core.L2AdvertisementSpec("all")]);
        var election = ElectionTable.Build(
            config.Pools,
            config.Advertisements,
            [new ElectionNode("node-a", new Dictionary<string, string>(), SpeakerAlive: true)],
            [new AnnouncedService("default/web", [Address], "main", new Dictionary<string, string>())]);
        return SpeakerPlan.Make("node-a", election, standing: true, janitor: false, [], [Eth0], new Regex("^lo$"));
    }

    private static V1Condition? Condition(V1Alpha1ServiceL2Status status, string type) => status.Status?.Conditions?.SingleOrDefault(c => c.Type == type);

    private static async Task<V1Alpha1ServiceL2Status> EventuallyAsync(KubeApiServer server, string name, Func<V1Alpha1ServiceL2Status, bool> done)
    {
        using var client = server.CreateApi();
        V1Alpha1ServiceL2Status? status = null;
        for (var i = 0; i < 200; i++)
        {
            try
            {
                status = await client.GetAsync(KubeResources.ServiceL2Statuses, Ns, name);
                if (done(status))
                {
                    return status;
                }
            }
            catch (KubeApiException)
            {
            }

            await Task.Delay(50);
        }

        Assert.Fail($"not reached; status now: {(status is null ? "none" : JsonSerializer.Serialize(status, KubeJson.Default.V1Alpha1ServiceL2Status))}");
        return null!;
    }
}
