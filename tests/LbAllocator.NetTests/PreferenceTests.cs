using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using Xunit.Abstractions;

namespace LbAllocator.NetTests;

/// <summary>L2Advertisement preferredNodeSelectors on the wire: the preferred node answers, the others take over when it dies, and it takes the address back.</summary>
[Collection(LabCollection.Name)]
public class PreferenceTests(Lab lab, ITestOutputHelper output) : IAsyncLifetime
{
    private const string Ip = "2001:db8::221";
    private const string ServiceName = "preferred";
    private const string Advertisement = "prefer-one-node";

    private readonly Lab.RefusalCheck _rbac = lab.CheckRefusals();

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _rbac.AssertNoneAsync();

    [RealApiFact]
    public async Task The_preferred_node_answers_another_takes_over_when_it_dies_and_it_takes_the_address_back()
    {
        // Prefer the node the hash ranks last for this address, so only the preference can put it there; when it
        // dies, the hash's first choice takes over.
        var key = Core.Ip.Parse(Ip).ToString();
        var byHash = Lab.Nodes.OrderByDescending(n => Core.Election.Score(n, key)).ThenBy(n => n, StringComparer.Ordinal).ToList();
        var (preferred, fallback) = (byHash[^1], byHash[0]);
        output.WriteLine($"preferring {preferred}; the hash ranks {string.Join(", ", byHash)}");

        // Only for this Service (serviceSelectors), so the lab's other Services keep the plain election.
        await lab.Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1L2Advertisement
            {
                Metadata = new V1ObjectMeta { Name = Advertisement },
                Spec = new L2AdvertisementSpec
                {
                    Interfaces = ["eth0"],
                    ServiceSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["placement"] = "preferred" } }],
                    PreferredNodeSelectors = [new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = preferred } }],
                },
            },
            Api.Group, Api.Version, Lab.InstallNamespace, "l2advertisements");
        var killed = false;
        try
        {
            await lab.CreateServiceAsync(ServiceName, ip: Ip, families: ["IPv6"]);
            await lab.Client.CoreV1.PatchNamespacedServiceAsync(
                new V1Patch("""{"metadata":{"labels":{"placement":"preferred"}}}""", V1Patch.PatchType.MergePatch), ServiceName, "default");
            await WaitForNdpOwnerAsync(preferred);
            await Eventually.HoldsAsync(async () => (await lab.L2StatusAsync(ServiceName))?.Status?.Node is var node && node == preferred ? null : $"ServiceL2Status names {node ?? "nobody"}, not {preferred}",
                TimeSpan.FromSeconds(10));
            var metrics = LbAllocator.TestApiServer.PrometheusText.Parse((await lab.SpeakerStatusAsync(preferred, "/metrics")).Body);
            Assert.True(
                metrics.GetValueOrDefault($"lballocator_speaker_owned_addresses{{node=\"{preferred}\",family=\"ipv6\"}}") >= 1,
                $"{preferred} does not count {Ip} among its owned IPv6 addresses");

            await lab.Speaker(preferred).SignalAsync("KILL");
            killed = true;
            await WaitForNdpOwnerAsync(fallback);

            // Back: it listens for a dead interval, then takes the address back (the election keeps no memory).
            lab.StartSpeaker(preferred);
            killed = false;
            await lab.WaitForSpeakersAsync([preferred]);
            await WaitForNdpOwnerAsync(preferred);
        }
        finally
        {
            if (killed)
            {
                lab.StartSpeaker(preferred);
                await lab.WaitForSpeakersAsync([preferred]);
            }

            await lab.Client.CustomObjects.DeleteNamespacedCustomObjectAsync(Api.Group, Api.Version, Lab.InstallNamespace, "l2advertisements", Advertisement);
        }
    }

    private async Task WaitForNdpOwnerAsync(string node) =>
        await Eventually.HoldsAsync(async () =>
        {
            var mac = await lab.NdpAsync(Ip);
            return mac == lab.Macs[node] ? null : $"{Ip} answered by {lab.Macs.FirstOrDefault(kv => kv.Value == mac).Key ?? mac ?? "nobody"}, not {node}";
        }, TimeSpan.FromSeconds(30));
}
