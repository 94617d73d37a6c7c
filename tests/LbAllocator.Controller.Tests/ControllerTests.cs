using k8s;
using k8s.Models;
using LbAllocator.Core;
using LbAllocator.Kubernetes.Crds;
using LbAllocator.TestApiServer;

namespace LbAllocator.Controller.Tests;

/// <summary>The controller against a real kube-apiserver: the behaviours operators rely on.</summary>
[Collection(RealClusterCollection.Name)]
public sealed class ControllerTests(RealCluster cluster) : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartAsync(cluster);

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [RealApiFact]
    public async Task A_new_service_gets_an_address_an_annotation_and_an_event()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30");
        await _f.StartControllerAsync();

        await _f.CreateServiceAsync("web");

        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") == "192.0.2.0", "web has 192.0.2.0");
        await ControllerFixture.Eventually(async () => (await _f.Client.CoreV1.ReadNamespacedServiceAsync("web", _f.ServiceNs)).Metadata.Annotations is { } a
            && a.TryGetValue(ServiceAnnotations.AllocatedFromPool, out var pool) && pool == "main",
            "web is annotated with its pool");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("web")).Any(e => e is { Type: "Normal", Reason: "IPAllocated", Message: "Assigned 192.0.2.0 from pool \"main\"" }), "an IPAllocated event");
        await ControllerFixture.Eventually(async () => (await _f.PoolAsync("main")).Status?.AssignedIPv4 == 1, "pool status counts 1 assigned");
        var pool = await _f.PoolAsync("main");
        Assert.Equal(3, pool.Status!.AvailableIPv4);
        Assert.Equal("True", pool.Status.Conditions!.Single(c => c.Type == "Valid").Status);
        // The ClusterIP is the API server's, the external address ours.
        var svc = await _f.Client.CoreV1.ReadNamespacedServiceAsync("web", _f.ServiceNs);
        Assert.StartsWith("10.96.", svc.Spec.ClusterIP, StringComparison.Ordinal);
    }

    [RealApiFact]
    public async Task Deleting_a_service_frees_its_address_for_a_waiting_one()
    {
        await _f.CreatePoolAsync("one", "192.0.2.7");
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("first");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("first") == "192.0.2.7", "first has the address");

        await _f.CreateServiceAsync("second");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("second")).Any(e => e.Reason == "AllocationFailed" && e.Message == "no available IPs in pool \"one\" (1 of 1 assigned)"), "second is told why it waits");
        Assert.Null(await _f.IngressAsync("second"));

        await _f.Client.CoreV1.DeleteNamespacedServiceAsync("first", _f.ServiceNs);

        await ControllerFixture.Eventually(async () => await _f.IngressAsync("second") == "192.0.2.7", "second gets the freed address");
    }

    [RealApiFact]
    public async Task A_restarted_controller_renumbers_nothing_and_writes_nothing()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/24");
        var first = await _f.StartControllerAsync();
        for (var i = 0; i < 20; i++)
        {
            await _f.CreateServiceAsync($"s{i}");
        }

        // Settled: every Service has its address and its pool annotation, so the first controller has nothing left to write.
        await ControllerFixture.Eventually(async () => (await _f.ServicesAsync()).All(s => s.Status?.LoadBalancer?.Ingress?.Count == 1
            && s.Metadata.Annotations?.ContainsKey(ServiceAnnotations.AllocatedFromPool) == true), "all 20 have an address and an annotation");
        await first.StopAsync();
        var before = (await _f.ServicesAsync()).ToDictionary(s => s.Metadata.Name, s => (Ip: s.Status.LoadBalancer.Ingress[0].Ip, Version: s.Metadata.ResourceVersion));
        // Delete the first one while no controller runs, so a naive restart would hand out 192.0.2.0 again in order.
        await _f.Client.CoreV1.DeleteNamespacedServiceAsync("s0", _f.ServiceNs);
        var statusWrites = _f.ControllerRequests.Count("PUT", "/status");
        var events = (await _f.Client.CoreV1.ListNamespacedEventAsync(_f.ServiceNs)).Items.Count;

        var second = await _f.StartControllerAsync();
        await ControllerFixture.Eventually(() => Task.FromResult(second.Reconciler.Ready), "the new controller is ready");
        await _f.CreateServiceAsync("late");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("late")).Any(e => e.Reason == "IPAllocated"), "a new service is served");

        var after = (await _f.ServicesAsync()).ToDictionary(s => s.Metadata.Name, s => (Ip: s.Status.LoadBalancer.Ingress[0].Ip, Version: s.Metadata.ResourceVersion));
        // Neither renumbered nor touched: the stored objects are the very versions of before the restart.
        Assert.Equal(before.Where(kv => kv.Key != "s0").OrderBy(kv => kv.Key, StringComparer.Ordinal), after.Where(kv => kv.Key != "late").OrderBy(kv => kv.Key, StringComparer.Ordinal));
        Assert.Equal(before["s0"].Ip, after["late"].Ip);
        // One status write and one event: the new Service's.
        Assert.Equal(1, _f.ControllerRequests.Count("PUT", "/status") - statusWrites);
        Assert.Equal(events + 1, (await _f.Client.CoreV1.ListNamespacedEventAsync(_f.ServiceNs)).Items.Count);
    }

    [RealApiFact]
    public async Task A_new_leader_claims_every_held_address_before_serving_anyone()
    {
        // Statuses as a previous leader (or another implementation) left them, and edits made while none led. Key
        // order puts the stale holder and the PreferDualStack one first, where they used to take the others' addresses.
        await _f.CreatePoolAsync("p", "203.0.113.0/29", "2001:db8::/125");
        async Task Held(string name, string[] ips, string policy = "SingleStack", string[]? families = null, Dictionary<string, string>? annotations = null)
        {
            var service = ControllerFixture.NewService(name, annotations);
            service.Spec.IpFamilyPolicy = policy;
            service.Spec.IpFamilies = families ?? ["IPv4"];
            service = await _f.Client.CoreV1.CreateNamespacedServiceAsync(service, _f.ServiceNs);
            if (ips.Length > 0)
            {
                service.Status = new V1ServiceStatus { LoadBalancer = new V1LoadBalancerStatus { Ingress = [.. ips.Select(ip => new V1LoadBalancerIngress { Ip = ip })] } };
                await _f.Client.CoreV1.ReplaceNamespacedServiceStatusAsync(service, name, _f.ServiceNs);
            }
        }

        await Held("a-stale", ["198.51.100.9"]);
        await Held("b-new", []);
        await Held("c-old", ["203.0.113.0"]);
        await Held("d-old2", ["203.0.113.5"]);
        await Held("e-edited", ["203.0.113.2"], annotations: new() { [ServiceAnnotations.LoadBalancerIPs] = "203.0.113.0" });
        await Held("f-prefer", ["203.0.113.1"], "PreferDualStack", ["IPv4", "IPv6"]);
        await Held("g-v6", ["2001:db8::"], families: ["IPv6"]);

        await _f.StartControllerAsync();

        var expected = new Dictionary<string, string>
        {
            ["a-stale"] = "203.0.113.2", // after the claims, in key order: e-edited's old address was not a valid claim
            ["b-new"] = "203.0.113.3",
            ["c-old"] = "203.0.113.0",
            ["d-old2"] = "203.0.113.5",
            ["e-edited"] = "",
            ["f-prefer"] = "203.0.113.1,2001:db8::1",
            ["g-v6"] = "2001:db8::",
        };
        await ControllerFixture.Eventually(async () => (await _f.ServicesAsync()).All(s =>
            string.Join(",", s.Status?.LoadBalancer?.Ingress?.Select(i => i.Ip) ?? []) == expected[s.Metadata.Name]), "every Service shows what the claim pass gives");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("e-edited")).Any(e => e.Reason == "AllocationFailed"
            && e.Message == $"IP 203.0.113.0 is used by {_f.ServiceNs}/c-old and cannot be shared: this Service has no {ServiceAnnotations.AllowSharedIp} annotation"),
            "the edited Service is refused the held address, as in steady state");
    }

    [RealApiFact]
    public async Task Two_controllers_with_leader_election_never_hand_out_one_address_twice()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/26");
        var a = await _f.StartControllerAsync("a", leaderElection: true);
        var b = await _f.StartControllerAsync("b", leaderElection: true);
        for (var i = 0; i < 20; i++)
        {
            await _f.CreateServiceAsync($"s{i}");
        }

        await ControllerFixture.Eventually(_f.AllServedAsync, "all have an address");
        var (leader, standby) = a.Reconciler.Ready ? (a, "b") : (b, "a");
        Assert.Equal(leader == a ? "a" : "b", (await LeaseAsync()).Spec.HolderIdentity);
        await leader.StopAsync();
        for (var i = 20; i < 30; i++)
        {
            await _f.CreateServiceAsync($"s{i}");
        }

        await ControllerFixture.Eventually(_f.AllServedAsync, "the standby took over and served the rest", TimeSpan.FromSeconds(20));
        var ips = (await _f.ServicesAsync()).Select(s => s.Status.LoadBalancer.Ingress[0].Ip).ToList();
        Assert.Equal(30, ips.Distinct().Count());
        var lease = await LeaseAsync();
        Assert.Equal(standby, lease.Spec.HolderIdentity);
        Assert.True(lease.Spec.LeaseTransitions >= 1, "the handover is a transition of the Lease");
    }

    [RealApiFact]
    public async Task An_invalid_pool_gets_a_condition_while_the_others_keep_working()
    {
        await _f.CreatePoolAsync("good", "192.0.2.0/30");
        await _f.CreatePoolAsync("bad", "192.0.2.5/24");
        await _f.StartControllerAsync();

        await _f.CreateServiceAsync("web");

        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") == "192.0.2.0", "web is served from the good pool");
        await ControllerFixture.Eventually(async () => (await _f.PoolAsync("bad")).Status?.Conditions?.Any(c => c.Type == "Valid" && c.Status == "False") == true, "the bad pool says it is invalid");
        var condition = (await _f.PoolAsync("bad")).Status!.Conditions!.Single();
        Assert.Contains("has host bits set", condition.Message, StringComparison.Ordinal);
        Assert.Contains("the pool is not used", condition.Message, StringComparison.Ordinal);
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("bad", _f.Ns)).Any(e => e.Reason == "InvalidPool"), "an InvalidPool event");
    }

    [RealApiFact]
    public async Task A_broken_edit_keeps_the_pool_on_its_last_valid_spec()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30");
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("web");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("web") == "192.0.2.0", "web is served");

        await _f.Client.CustomObjects.PatchNamespacedCustomObjectAsync(
            new V1Patch("""{"spec":{"addresses":["192.0.2.5/24"]}}""", V1Patch.PatchType.MergePatch), Api.Group, Api.Version, _f.Ns, "ipaddresspools", "main");
        await _f.CreateServiceAsync("api");

        await ControllerFixture.Eventually(async () => await _f.IngressAsync("api") == "192.0.2.1", "new services still get addresses from the last valid spec");
        Assert.Equal("192.0.2.0", await _f.IngressAsync("web"));
        await ControllerFixture.Eventually(async () => (await _f.PoolAsync("main")).Status?.Conditions?.Single().Status == "False", "the pool says its spec is invalid");
        var pool = await _f.PoolAsync("main");
        Assert.Contains("still serving its last valid spec", pool.Status!.Conditions!.Single().Message, StringComparison.Ordinal);
        // The condition is about the edited spec: the real server bumped the generation.
        Assert.Equal(pool.Metadata.Generation, pool.Status.Conditions!.Single().ObservedGeneration);
    }

    [RealApiFact]
    public async Task A_bad_annotation_gets_a_warning_and_changes_nothing()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/30");
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("web");
        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("web")).Any(e => e.Reason == "IPAllocated"), "web is served");
        var writes = _f.ControllerRequests.Count("PUT", "/status");

        var patched = await _f.Client.CoreV1.PatchNamespacedServiceAsync(
            new V1Patch("{\"metadata\":{\"annotations\":{\"" + ServiceAnnotations.LoadBalancerIPs + "\":\"192.0.2.300\"}}}", V1Patch.PatchType.MergePatch), "web", _f.ServiceNs);

        await ControllerFixture.Eventually(async () => (await _f.EventsAsync("web")).Any(e => e.Reason == "InvalidAnnotation" && e.Type == "Warning" && e.Message.Contains("\"192.0.2.300\" is not a valid IP address", StringComparison.Ordinal)), "a warning names the annotation");
        var svc = await _f.Client.CoreV1.ReadNamespacedServiceAsync("web", _f.ServiceNs);
        Assert.Equal("192.0.2.0", svc.Status.LoadBalancer.Ingress.Single().Ip);
        // The warning comes after any write would have: the Service is still the version our patch made.
        Assert.Equal(patched.Metadata.ResourceVersion, svc.Metadata.ResourceVersion);
        Assert.Equal(writes, _f.ControllerRequests.Count("PUT", "/status"));
    }

    private Task<V1Lease> LeaseAsync() => _f.Client.CoordinationV1.ReadNamespacedLeaseAsync("lballocator-controller", _f.Ns);

    [RealApiFact]
    public async Task Taking_over_from_MetalLB_keeps_every_address_and_reads_its_annotations()
    {
        await _f.ApplyAsync("apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: legacy}\nspec: {addresses: [203.0.113.0/28], autoAssign: false}\n");
        // As MetalLB left them: asked by its annotations, served, its status written.
        var sharing = new Dictionary<string, string> { ["metallb.universe.tf/allow-shared-ip"] = "k", ["metallb.io/address-pool"] = "legacy" };
        await HeldAsync("shared-1", "203.0.113.5", sharing, port: 80);
        await HeldAsync("shared-2", "203.0.113.5", sharing, port: 443);
        await HeldAsync("fixed", "203.0.113.9", new() { ["metallb.universe.tf/loadBalancerIPs"] = "203.0.113.9" }, port: 80);

        await _f.StartControllerAsync(acceptMetalLbAnnotations: true);
        await _f.CreateServiceAsync("new", new() { ["metallb.io/loadBalancerIPs"] = "203.0.113.12" });

        await ControllerFixture.Eventually(async () => await _f.IngressAsync("new") == "203.0.113.12", "new gets the address MetalLB's annotation asks for");
        foreach (var (name, ip) in new[] { ("shared-1", "203.0.113.5"), ("shared-2", "203.0.113.5"), ("fixed", "203.0.113.9") })
        {
            await ControllerFixture.Eventually(async () => (await _f.Client.CoreV1.ReadNamespacedServiceAsync(name, _f.ServiceNs)).Metadata.Annotations
                .TryGetValue(ServiceAnnotations.AllocatedFromPool, out var pool) && pool == "legacy", $"{name} is ours, from pool legacy");
            Assert.Equal(ip, await _f.IngressAsync(name));
        }

        Assert.DoesNotContain((await _f.Client.CoreV1.ListNamespacedEventAsync(_f.ServiceNs)).Items, e => e.Type == "Warning");
    }

    private async Task HeldAsync(string name, string ip, Dictionary<string, string> annotations, int port)
    {
        var service = ControllerFixture.NewService(name, annotations);
        service.Spec.Ports[0].Port = port;
        await _f.Client.CoreV1.CreateNamespacedServiceAsync(service, _f.ServiceNs);
        await _f.Client.CoreV1.PatchNamespacedServiceStatusAsync(
            new V1Patch("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"" + ip + "\"}]}}}", V1Patch.PatchType.MergePatch), name, _f.ServiceNs);
    }
}

/// <summary>The controller against the double, for what a real server cannot do on demand: drop watches, expire versions, fail.</summary>
public sealed class ControllerFaultTests : IAsyncLifetime
{
    private ControllerFixture _f = null!;

    public async Task InitializeAsync() => _f = await ControllerFixture.StartDoubleAsync();

    public async Task DisposeAsync() => await _f.DisposeAsync();

    [Fact]
    public async Task Dropped_watches_and_expired_versions_still_converge()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/24");
        await _f.StartControllerAsync();
        await _f.CreateServiceAsync("before");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("before") is not null, "before is served");

        for (var round = 0; round < 3; round++)
        {
            _f.Faults.CompactHistory();
            _f.Faults.DropWatches();
            await _f.CreateServiceAsync($"during-{round}");
        }

        await _f.Client.CoreV1.DeleteNamespacedServiceAsync("before", _f.ServiceNs);
        await ControllerFixture.Eventually(async () => Enumerable.Range(0, 3).All(r => _f.IngressAsync($"during-{r}").Result is not null), "every service created while watches dropped is served");
        await _f.CreateServiceAsync("after");
        await ControllerFixture.Eventually(async () => await _f.IngressAsync("after") is not null, "after is served");
        // Whichever Service the cache saw first after the re-list took the freed 192.0.2.0: none is lost or doubled.
        var ips = (await _f.ServicesAsync()).Select(s => s.Status.LoadBalancer.Ingress[0].Ip).Order();
        Assert.Equal(["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.3"], ips);
    }

    [Fact]
    public async Task A_stretch_of_500s_is_retried_and_converges()
    {
        await _f.CreatePoolAsync("main", "192.0.2.0/24");
        await _f.StartControllerAsync();
        await ControllerFixture.Eventually(async () => (await _f.PoolAsync("main")).Status is not null, "the controller is up");

        _f.Faults.FailRequestsFor(TimeSpan.FromSeconds(2));
        _f.Faults.DropWatches();
        await Task.Delay(2100);
        for (var i = 0; i < 5; i++)
        {
            await _f.CreateServiceAsync($"s{i}");
        }

        await ControllerFixture.Eventually(_f.AllServedAsync, "all served after the errors");
        // The double keeps ipMode (kube-apiserver 1.28 drops it): the controller writes VIP, as 1.29+ servers default it.
        Assert.All(await _f.ServicesAsync(), s => Assert.Equal("VIP", s.Status.LoadBalancer.Ingress.Single().IpMode));
    }
}
