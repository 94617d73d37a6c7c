using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes;

namespace LbAllocator.NetTests;

/// <summary>
/// deploy/rbac.yaml against the requests a running controller and running speakers actually send, as the
/// real server's audit log records them under each component's ServiceAccount (every call of the run so
/// far, this test's own paths included): every call is allowed by the rendered rules, and every rule is used.
/// That the real authorizer refused none is checked by every lab test for its own span (<see cref="Lab.CheckRefusals"/>).
/// </summary>
[Collection(LabCollection.Name)]
public class RbacTests(Lab lab) : IAsyncLifetime
{
    private const string Ns = Lab.InstallNamespace;

    /// <summary>Rules no run exercises on purpose, and why they are needed anyway.</summary>
    private static readonly Dictionary<(string Component, string Group, string Resource, string Verb), string> Unexercised = new()
    {
        [("controller", "", "services/status", "get")] = "a fresh read after a 409 conflict on the status write",
        [("controller", "", "services", "patch")] = "the pool annotation, patched only where a server drops metadata written through the status (kube-apiserver keeps it)",
        [("speaker", "coordination.k8s.io", "leases", "list")] = "asked only by a speaker nobody answers on the LAN: is another speaker still renewing its lease?",
    };

    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    /// <summary>What RBAC refused the components so far, for a message: a path that stalls may be why.</summary>
    private string Refused() =>
        string.Concat(lab.Forbidden().Select(e => $"\n  403 for {e.User}: {e.Call}").Distinct());

    [RealApiFact]
    public async Task The_install_rbac_allows_every_call_the_components_make_and_nothing_they_do_not()
    {
        // Exercise every path: announce, hand over on SIGTERM (lease deleted, status moved), delete, a node relabelled.
        await lab.CreateServiceAsync("rbac", ip: "192.0.2.210");
        var owner = await lab.WaitForArpOwnerAsync("192.0.2.210");
        await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync("rbac"))?.Status?.Node == owner ? null : "no status for rbac yet" + Refused(), TimeSpan.FromSeconds(10));
        await lab.Speaker(owner).SignalAsync("TERM");
        var successor = await lab.WaitForArpOwnerAsync("192.0.2.210", not: owner);
        await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync("rbac"))?.Status?.Node == successor ? null : "status not moved yet" + Refused(), TimeSpan.FromSeconds(10));
        // The handover (a leaving heartbeat) is done before the lease is deleted: let it finish, as the kubelet does.
        Assert.True(await lab.Speaker(owner).WaitForExitAsync(TimeSpan.FromSeconds(10)), "the speaker did not exit on SIGTERM");
        lab.StartSpeaker(owner);
        await lab.WaitForSpeakersAsync([owner]);
        await lab.Client.CoreV1.DeleteNamespacedServiceAsync("rbac", "default");
        await Eventually.HoldsAsync(async () => await lab.L2StatusAsync("rbac") is null ? null : "status of rbac not deleted" + Refused(), TimeSpan.FromSeconds(10));
        // A label the election reads, put on and taken off a node: the controller updates the node digest twice.
        foreach (var excluded in new[] { true, false })
        {
            var label = $"{{\"metadata\":{{\"labels\":{{\"{Election.ExcludeLabel}\":{(excluded ? "\"\"" : "null")}}}}}}}";
            await lab.Client.CoreV1.PatchNodeAsync(new V1Patch(label, V1Patch.PatchType.MergePatch), Lab.Nodes[2]);
            await Eventually.HoldsAsync(
                async () => (await lab.Client.CoreV1.ReadNamespacedConfigMapAsync(NodeDigest.ConfigMapName, Ns)).Data[Lab.Nodes[2]].Contains(Election.ExcludeLabel, StringComparison.Ordinal) == excluded
                    ? null : "node digest not updated" + Refused(),
                TimeSpan.FromSeconds(10));
        }

        var audited = lab.Server.AuditEvents();
        foreach (var (component, user) in new[] { ("controller", Lab.ControllerUser), ("speaker", Lab.SpeakerUser) })
        {
            // Resource requests only: discovery and /version are open to every authenticated user.
            var calls = audited.Where(e => e.User == user && e.Resource.Length > 0).Select(e => e.Call).Distinct().ToList();
            Assert.NotEmpty(calls);
            var grants = Grants.For(InstallManifests.Objects, Ns, $"lballocator-{component}");

            var denied = calls.Where(c => !grants.Allows(c)).Select(c => c.ToString()).Order(StringComparer.Ordinal);
            Assert.Empty(denied);

            var used = calls.Select(c => (c.Group, c.Resource, c.Verb)).ToHashSet();
            var unused = grants.Granted().Distinct()
                .Where(g => !used.Contains(g) && !Unexercised.ContainsKey((component, g.Group, g.Resource, g.Verb)))
                .Select(g => $"{g.Verb} {(g.Group.Length == 0 ? "" : g.Group + "/")}{g.Resource}");
            Assert.Empty(unused);
        }
    }
}
